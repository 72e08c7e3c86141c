import math

import pytest
import torch
from torch.testing import assert_close

from rlaif_ray.algorithms import corrected_policy_loss, importance_weights, ppo_policy_loss

C = 2.0
EPS = 0.2
E5 = math.exp(0.5)  # 1.648721

# A 2×3 batch, row 1 has one padded token. log ρ = old − behaviour on the valid tokens:
#   row 0: [0.5, ln 3, −ln 2]  →  ρ = [e^0.5 = 1.648721, 3 (> C), 0.5 (< 1)]
#   row 1: [0,   ln 1.5, P]    →  ρ = [1, 1.5, P]
# The padded column has old 9, behaviour −100: log ρ = 109 would overflow exp in float32
# (e^109 = inf); it must not leak into anything.
MASK = torch.tensor([[1.0, 1, 1], [1, 1, 0]])
BEHAVIOUR = torch.tensor([[-1.0, -2.0, -1.0], [-0.5, -1.0, -100.0]])
LOG_RHO = torch.tensor([[0.5, math.log(3), -math.log(2)], [0.0, math.log(1.5), 109.0]])
OLD = BEHAVIOUR + LOG_RHO

# k3 per valid token, ρ − 1 − ln ρ:
#   e^0.5 − 1 − 0.5      = 0.148721
#   3 − 1 − ln 3         = 2 − 1.098612 = 0.901388
#   0.5 − 1 − ln 0.5     = −0.5 + 0.693147 = 0.193147
#   1 − 1 − 0            = 0
#   1.5 − 1 − ln 1.5     = 0.5 − 0.405465 = 0.094535
#   mean over 5 tokens   = 1.337791 / 5 = 0.267558
K3 = [E5 - 1.5, 2 - math.log(3), -0.5 + math.log(2), 0.0, 0.5 - math.log(1.5)]
MISMATCH_KL = sum(K3) / 5


def _f(x):
    return float(x)


def test_none_weights_are_one_and_stats_are_informative():
    w, keep, st = importance_weights(OLD, BEHAVIOUR, MASK, "none", C)
    assert torch.equal(w, torch.ones(2, 3))
    assert torch.equal(keep, MASK)
    # min(ρ, C) = [1.648721, 2, 0.5, 1, 1.5]: mean 6.648721/5 = 1.329744, max 2
    assert _f(st["weight_mean"]) == pytest.approx((E5 + 2 + 0.5 + 1 + 1.5) / 5, rel=1e-6)
    assert _f(st["weight_max"]) == pytest.approx(2.0)
    # one of 5 valid tokens has ρ > C (ρ = 3); the padded ρ = e^109 does not count
    assert _f(st["truncated_share"]) == pytest.approx(0.2)
    assert _f(st["mismatch_kl"]) == pytest.approx(MISMATCH_KL, rel=1e-5)


def test_tis_weights_truncate_at_cap():
    w, keep, st = importance_weights(OLD, BEHAVIOUR, MASK, "tis", C)
    # w = min(ρ, 2): ρ = 3 → 2, ρ = 0.5 stays 0.5 (no lower truncation); padding: 1
    assert_close(w, torch.tensor([[E5, 2.0, 0.5], [1.0, 1.5, 1.0]]))
    assert torch.equal(keep, MASK)
    assert _f(st["weight_mean"]) == pytest.approx((E5 + 2 + 0.5 + 1 + 1.5) / 5, rel=1e-6)
    assert _f(st["weight_max"]) == pytest.approx(2.0)
    assert _f(st["truncated_share"]) == pytest.approx(0.2)
    assert _f(st["mismatch_kl"]) == pytest.approx(MISMATCH_KL, rel=1e-5)


def test_decoupled_drops_tokens_above_cap():
    w, keep, st = importance_weights(OLD, BEHAVIOUR, MASK, "decoupled", C)
    # w = ρ untruncated; the ρ = 3 token leaves the loss, so do padded tokens
    assert_close(w, torch.tensor([[E5, 3.0, 0.5], [1.0, 1.5, 1.0]]))
    assert torch.equal(keep, torch.tensor([[1.0, 0, 1], [1, 1, 0]]))
    # over the 4 kept tokens: (1.648721 + 0.5 + 1 + 1.5)/4 = 4.648721/4 = 1.162180, max e^0.5
    assert _f(st["weight_mean"]) == pytest.approx((E5 + 0.5 + 1 + 1.5) / 4, rel=1e-6)
    assert _f(st["weight_max"]) == pytest.approx(E5, rel=1e-6)
    assert _f(st["truncated_share"]) == pytest.approx(0.2)
    assert _f(st["mismatch_kl"]) == pytest.approx(MISMATCH_KL, rel=1e-5)


def test_mismatch_kl_single_token_by_hand():
    # ρ = e^0.5 → k3 = e^0.5 − 1 − 0.5 = 0.148721
    _, _, st = importance_weights(torch.tensor([[0.5]]), torch.tensor([[0.0]]), torch.ones(1, 1), "tis", C)
    assert _f(st["mismatch_kl"]) == pytest.approx(math.exp(0.5) - 1.5, rel=1e-6)


@pytest.mark.parametrize("mode", ["none", "tis", "decoupled"])
def test_on_policy_has_zero_mismatch_and_unit_weights(mode):
    torch.manual_seed(0)
    old = -torch.rand(3, 4) * 3
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    w, keep, st = importance_weights(old, old.clone(), mask, mode, C)
    assert torch.equal(w, torch.ones(3, 4))
    assert torch.equal(keep, mask)
    assert _f(st["mismatch_kl"]) == 0.0
    assert _f(st["truncated_share"]) == 0.0
    assert _f(st["weight_mean"]) == 1.0 and _f(st["weight_max"]) == 1.0


def test_unknown_mode_raises():
    with pytest.raises(ValueError, match="off-policy"):
        importance_weights(OLD, BEHAVIOUR, MASK, "vtrace", C)


def test_extreme_log_ratio_is_clamped_not_inf():
    # behaviour −inf on a valid token (an engine reporting an impossible token): log ρ = +inf,
    # clamped to 20 before exp, so ρ = e^20 is finite; tis caps it at C, decoupled drops it.
    old = torch.tensor([[-1.0, -1.0]])
    beh = torch.tensor([[-float("inf"), -1.0]])
    mask = torch.ones(1, 2)
    w, keep, st = importance_weights(old, beh, mask, "tis", C)
    assert torch.isfinite(w).all() and w[0, 0] == C
    assert math.isfinite(_f(st["mismatch_kl"]))
    w, keep, _ = importance_weights(old, beh, mask, "decoupled", C)
    assert torch.isfinite(w).all() and keep.tolist() == [[0.0, 1.0]]
    logp = old.clone().requires_grad_()
    loss, _ = corrected_policy_loss(logp, old, beh, torch.ones(1, 2), mask, EPS, "decoupled", C)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logp.grad).all()


# Policy-loss example on the same tokens, ε = 0.2, r = π_θ/π_old:
#              A    r     −A·r   −A·clip(r)   term   clipped?
#   (0, 0)    +1   1.5   −1.5     −1.2        −1.2   yes
#   (0, 1)    +1   1.0   −1.0     −1.0        −1.0   no
#   (0, 2)    −1   0.5   +0.5     +0.8        +0.8   yes
#   (1, 0)    −1   1.5   +1.5     +1.2        +1.5   no
#   (1, 1)    +2   1.0   −2.0     −2.0        −2.0   no
#   (1, 2)    padding (A 5, r 3)
RATIO = torch.tensor([[1.5, 1.0, 0.5], [1.5, 1.0, 3.0]])
ADV = torch.tensor([[1.0, 1.0, -1.0], [-1.0, 2.0, 5.0]])


def _loss(mode):
    logp = (OLD + torch.log(RATIO)).requires_grad_()
    old = OLD.clone().requires_grad_()
    beh = BEHAVIOUR.clone().requires_grad_()
    adv = ADV.clone().requires_grad_()
    loss, stats = corrected_policy_loss(logp, old, beh, adv, MASK, EPS, mode, C)
    loss.backward()
    # only π_θ carries gradients: π_old, π_behaviour and A are constants
    assert old.grad is None and beh.grad is None and adv.grad is None
    return loss, stats, logp.grad


def test_tis_loss_by_hand():
    loss, stats, grad = _loss("tis")
    # w = [e^0.5, 2, 0.5, 1, 1.5]:
    #   e^0.5·(−1.2) + 2·(−1) + 0.5·0.8 + 1·1.5 + 1.5·(−2)
    #   = −1.978466 − 2 + 0.4 + 1.5 − 3 = −5.078466;   / 5 kept tokens = −1.015693
    assert_close(loss, torch.tensor((-1.2 * E5 - 2 + 0.4 + 1.5 - 3) / 5))
    # d/dlogp of w·(−A·r) = −w·A·r on unclipped tokens, /5; clipped and padding: 0
    #   (0, 1): −2·1·1/5 = −0.4;  (1, 0): −1·(−1)·1.5/5 = 0.3;  (1, 1): −1.5·2·1/5 = −0.6
    assert_close(grad, torch.tensor([[0.0, -0.4, 0.0], [0.3, -0.6, 0.0]]))
    # clipfrac over the 5 kept tokens: 2/5; importance stats come along
    assert_close(stats["clipfrac"], torch.tensor(0.4))
    assert _f(stats["truncated_share"]) == pytest.approx(0.2)
    assert _f(stats["mismatch_kl"]) == pytest.approx(MISMATCH_KL, rel=1e-5)


def test_decoupled_loss_by_hand():
    loss, stats, grad = _loss("decoupled")
    # token (0, 1) (ρ = 3 > C) leaves; w = ρ on the others:
    #   e^0.5·(−1.2) + 0.5·0.8 + 1·1.5 + 1.5·(−2) = −1.978466 + 0.4 + 1.5 − 3 = −3.078466
    #   / 4 kept tokens = −0.769617
    assert_close(loss, torch.tensor((-1.2 * E5 + 0.4 + 1.5 - 3) / 4))
    #   (0, 1) dropped: 0;  (1, 0): 1.5/4 = 0.375;  (1, 1): −1.5·2/4 = −0.75
    assert_close(grad, torch.tensor([[0.0, 0.0, 0.0], [0.375, -0.75, 0.0]]))
    # clipfrac over the 4 kept tokens: (0, 0) and (0, 2) → 2/4
    assert_close(stats["clipfrac"], torch.tensor(0.5))
    assert _f(stats["weight_mean"]) == pytest.approx((E5 + 0.5 + 1 + 1.5) / 4, rel=1e-6)


def test_none_loss_by_hand_and_equal_to_ppo():
    loss, stats, grad = _loss("none")
    # plain mean of the terms: (−1.2 − 1 + 0.8 + 1.5 − 2)/5 = −1.9/5 = −0.38
    assert_close(loss, torch.tensor(-0.38))
    logp = (OLD + torch.log(RATIO)).requires_grad_()
    ref_loss, ref_stats = ppo_policy_loss(logp, OLD, ADV, MASK, EPS)
    ref_loss.backward()
    assert torch.equal(loss, ref_loss) and torch.equal(grad, logp.grad)
    for k, v in ref_stats.items():
        assert torch.equal(stats[k], v)


def test_none_equals_ppo_exactly_on_random_batch():
    torch.manual_seed(1)
    B, T = 5, 7
    old = -torch.rand(B, T) * 4
    beh = old + 0.3 * torch.randn(B, T)
    logp = (old + 0.2 * torch.randn(B, T)).requires_grad_()
    adv = torch.randn(B, T)
    mask = (torch.arange(T)[None, :] < torch.tensor([7, 3, 0, 5, 1])[:, None]).float()
    loss, stats = corrected_policy_loss(logp, old, beh, adv, mask, EPS, "none", C)
    loss.backward()
    g = logp.grad.clone()
    logp.grad = None
    ref, ref_stats = ppo_policy_loss(logp, old, adv, mask, EPS)
    ref.backward()
    assert torch.equal(loss, ref) and torch.equal(g, logp.grad)
    assert all(torch.equal(stats[k], v) for k, v in ref_stats.items())
    # and weights of 1 through the optional argument change no bit either
    ones, _ = ppo_policy_loss(logp, old, adv, mask, EPS, weights=torch.ones(B, T))
    assert torch.equal(ones, ref)


def test_weights_do_not_carry_gradients():
    # even if a caller passes weights that require grad, they are treated as constants
    logp = torch.zeros(1, 2, requires_grad=True)
    w = torch.tensor([[2.0, 0.5]], requires_grad=True)
    loss, _ = ppo_policy_loss(logp, torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2), EPS, weights=w)
    loss.backward()
    assert w.grad is None
    # r = 1 (unclipped): d/dlogp of −w·A·r / 2 = −w/2
    assert_close(logp.grad, torch.tensor([[-1.0, -0.25]]))
