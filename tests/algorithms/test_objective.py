"""The PPO objective by hand-worked numbers: one minibatch, B = 1, T = 2, every token valid."""

from __future__ import annotations

import math

import pytest
import torch

from rlaif_ray.algorithms.objective import Minibatch, ObjectiveSettings, ppo_objective


def t(*xs: float) -> torch.Tensor:
    return torch.tensor([list(xs)], dtype=torch.float64)


ONES = t(1.0, 1.0)


def settings(**over) -> ObjectiveSettings:
    base = dict(clip=0.2, entropy_coef=0.0, kl_in_loss=False, kl_estimator="k1")
    return ObjectiveSettings(**{**base, **over})


def test_every_policy_term_by_hand():
    # On-policy (r = 1): L_clip = mean(−A) = mean(−2, −1) = −1.5.
    # H̄ = mean(0.5, 1.5) = 1.0, c_H = 0.1 → −0.1.
    # k1 = logp − ref = (0 − (−1), 0 − (−1)) = (1, 1), KL̄ = 1, β = 0.2 → +0.2.
    # L_π = −1.5 − 0.1 + 0.2 = −1.4.
    mb = Minibatch(logp=t(0.0, 0.0), entropy=t(0.5, 1.5), old_logp=t(0.0, 0.0), advantages=t(2.0, 1.0),
                   mask=ONES, ref_logp=t(-1.0, -1.0))
    policy, value, stats = ppo_objective(mb, settings(entropy_coef=0.1, kl_in_loss=True), kl_coef=0.2)
    assert policy.item() == pytest.approx(-1.4)
    assert value is None
    assert stats == pytest.approx({"loss/policy": -1.5, "clipfrac": 0.0, "approx_kl": 0.0})


def test_kl_term_only_when_the_kl_sits_in_the_loss():
    mb = Minibatch(logp=t(0.0, 0.0), entropy=t(0.0, 0.0), old_logp=t(0.0, 0.0), advantages=t(2.0, 1.0),
                   mask=ONES, ref_logp=t(-1.0, -1.0))
    policy, _, _ = ppo_objective(mb, settings(kl_in_loss=False), kl_coef=0.2)
    assert policy.item() == pytest.approx(-1.5)


def test_clipped_ratio_by_hand():
    # r = (1.5, 1), A = (1, 1), ε = 0.2: token 1 max(−1.5, −1.2) = −1.2 (clipped), token 2 −1
    # → L_clip = −1.1, clipfrac = ½, approx_kl = mean(½·ln(1.5)², 0) = ¼·ln(1.5)².
    mb = Minibatch(logp=t(math.log(1.5), 0.0), entropy=t(0.0, 0.0), old_logp=t(0.0, 0.0),
                   advantages=t(1.0, 1.0), mask=ONES)
    policy, _, stats = ppo_objective(mb, settings(), kl_coef=0.0)
    assert policy.item() == pytest.approx(-1.1)
    assert stats["clipfrac"] == pytest.approx(0.5)
    assert stats["approx_kl"] == pytest.approx(0.25 * math.log(1.5) ** 2)


def test_truncated_importance_weights_by_hand():
    # w = π_old/π_behaviour = exp(0 − (−ln 4), 0 − 0) = (4, 1); tis caps at C = 2 → (2, 1).
    # On-policy to π_old, A = (1, 1): L_clip = mean(−2, −1) = −1.5.
    mb = Minibatch(logp=t(0.0, 0.0), entropy=t(0.0, 0.0), old_logp=t(0.0, 0.0), advantages=t(1.0, 1.0),
                   mask=ONES, behaviour_logp=t(-math.log(4.0), 0.0))
    policy, _, stats = ppo_objective(mb, settings(correction="tis", importance_cap=2.0), kl_coef=0.0)
    assert policy.item() == pytest.approx(-1.5)
    assert stats["off_policy/train_weight_mean"] == pytest.approx(1.5)


def test_value_term_by_hand():
    # v = (1, 2), v_old = (1, 2), R = (2, 2): no clipping; L_Vclip = ½·mean((1−2)², 0) = 0.25,
    # c_V = 0.5 → L_V = 0.125; the stat is L_Vclip unscaled.
    mb = Minibatch(logp=t(0.0, 0.0), entropy=t(0.0, 0.0), old_logp=t(0.0, 0.0), advantages=t(0.0, 0.0),
                   mask=ONES, values=t(1.0, 2.0), old_values=t(1.0, 2.0), returns=t(2.0, 2.0))
    _, value, stats = ppo_objective(mb, settings(value_coef=0.5, value_clip=0.2), kl_coef=0.0)
    assert value.item() == pytest.approx(0.125)
    assert stats["loss/value"] == pytest.approx(0.25)


def test_gradients_reach_logp_entropy_and_values_only():
    logp = t(0.1, -0.2).requires_grad_()
    ent = t(0.5, 0.5).requires_grad_()
    values = t(1.0, 0.0).requires_grad_()
    mb = Minibatch(logp=logp, entropy=ent, old_logp=t(0.0, 0.0), advantages=t(1.0, -1.0), mask=ONES,
                   ref_logp=t(0.0, 0.0), values=values, old_values=t(1.0, 0.0), returns=t(0.0, 0.0))
    policy, value, _ = ppo_objective(mb, settings(entropy_coef=0.1, kl_in_loss=True), kl_coef=0.1)
    (policy + value).backward()
    assert logp.grad is not None and ent.grad is not None and values.grad is not None
    # ∂L_π/∂H_t = −c_H / 2 per token.
    assert ent.grad[0].tolist() == pytest.approx([-0.05, -0.05])
