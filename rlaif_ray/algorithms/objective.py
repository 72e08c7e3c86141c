"""The PPO objective of one minibatch, every term in one place.

    L_π = L_clip(θ; w) − c_H · H̄(π_θ) + β · KL̄(π_θ ‖ π_ref)      policy network θ
    L_V = c_V · L_Vclip(φ)                                        critic φ (ppo only)

    L_clip      clipped surrogate around π_old (ppo.py `ppo_policy_loss`); with an off-policy
                correction the tokens are weighted by w = π_old/π_behaviour (off_policy.py)
    H̄           masked mean entropy of π_θ over the response tokens
    KL̄          masked mean per-token KL estimate against the reference (kl.py
                `kl_penalty_loss`), only when the KL sits in the loss (`kl.placement: loss`)
    L_Vclip     clipped value loss (ppo.py `ppo_value_loss`)

The policy and the critic share no parameters and each has its own optimiser, so minimising
L_π + L_V is minimising each: the two are returned apart because each network steps on its
own. Pure: tensors in, tensors out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlaif_ray.algorithms.kl import kl_penalty_loss
from rlaif_ray.algorithms.masks import masked_mean
from rlaif_ray.algorithms.off_policy import corrected_policy_loss
from rlaif_ray.algorithms.ppo import ppo_policy_loss, ppo_value_loss


@dataclass(frozen=True)
class ObjectiveSettings:
    """The objective's constants for a run (from `ppo.*` and `kl.*`)."""

    clip: float                 # ε of the clipped surrogate
    entropy_coef: float         # c_H
    kl_in_loss: bool            # the β·KL̄ term is present
    kl_estimator: str           # k1 | k2 | k3
    correction: str = "none"    # none | tis | decoupled (off_policy.py)
    importance_cap: float = 2.0  # C of the correction
    value_clip: float = 0.2     # c of the clipped value loss
    value_coef: float = 0.5     # c_V


@dataclass
class Minibatch:
    """What the objective reads of one minibatch; every tensor (B, T) on one device.

    `logp`, `entropy` (and `values`) carry gradients; the rest are constants.
    `ref_logp` is needed when the KL is in the loss, `behaviour_logp` (the engine's own
    logprobs of the sampled tokens) with a correction, `values`/`old_values`/`returns`
    with a critic.
    """

    logp: torch.Tensor
    entropy: torch.Tensor
    old_logp: torch.Tensor
    advantages: torch.Tensor
    mask: torch.Tensor
    ref_logp: torch.Tensor | None = None
    behaviour_logp: torch.Tensor | None = None
    values: torch.Tensor | None = None
    old_values: torch.Tensor | None = None
    returns: torch.Tensor | None = None


def ppo_objective(mb: Minibatch, s: ObjectiveSettings, kl_coef: float
                  ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, float]]:
    """(L_π, L_V or None without a critic, stats) of one minibatch; β = `kl_coef`.

    stats: loss/policy (L_clip alone), clipfrac, approx_kl, loss/value (L_Vclip, unscaled)
    with a critic, and off_policy/train_weight_mean (mean w over the minibatch's tokens)
    with a correction.
    """
    if s.correction == "none":
        clip_loss, st = ppo_policy_loss(mb.logp, mb.old_logp, mb.advantages, mb.mask, s.clip)
    else:
        clip_loss, st = corrected_policy_loss(mb.logp, mb.old_logp, mb.behaviour_logp, mb.advantages, mb.mask,
                                              s.clip, s.correction, s.importance_cap)
    policy = clip_loss - s.entropy_coef * masked_mean(mb.entropy, mb.mask)
    if s.kl_in_loss:
        policy = policy + kl_coef * kl_penalty_loss(mb.logp, mb.ref_logp, mb.mask, s.kl_estimator)
    stats = {"loss/policy": clip_loss.item(), "clipfrac": float(st["clipfrac"]), "approx_kl": float(st["approx_kl"])}
    if s.correction != "none":
        stats["off_policy/train_weight_mean"] = float(st["weight_mean"])
    value = None
    if mb.values is not None:
        value_clip_loss = ppo_value_loss(mb.values, mb.old_values, mb.returns, mb.mask, s.value_clip)
        value = s.value_coef * value_clip_loss
        stats["loss/value"] = value_clip_loss.item()
    return policy, value, stats
