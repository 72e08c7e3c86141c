import math

import pytest
import torch
from torch.testing import assert_close

from rlaif_ray.algorithms import (
    AdaptiveKLController,
    FixedKLController,
    kl_estimate,
    kl_penalty_loss,
    kl_shaped_rewards,
    make_kl_controller,
)

LN2 = math.log(2)


def test_estimators_hand():
    # logp − ref = +ln 2:  k1 = ln 2,  k2 = ½ln²2,  k3 = e^{−ln 2} − 1 + ln 2 = ln 2 − 0.5
    # logp − ref = −ln 2:  k1 = −ln 2, k2 = ½ln²2,  k3 = e^{ln 2} − 1 − ln 2 = 1 − ln 2
    logp = torch.log(torch.tensor([0.5, 0.25]))
    ref = torch.log(torch.tensor([0.25, 0.5]))
    assert_close(kl_estimate(logp, ref, "k1"), torch.tensor([LN2, -LN2]))
    assert_close(kl_estimate(logp, ref, "k2"), torch.tensor([0.5 * LN2**2, 0.5 * LN2**2]))
    assert_close(kl_estimate(logp, ref, "k3"), torch.tensor([LN2 - 0.5, 1 - LN2]))


def test_k2_k3_nonnegative_random():
    torch.manual_seed(0)
    logp, ref = torch.randn(2, 64, 32) * 3
    assert (kl_estimate(logp, ref, "k3") >= 0).all()
    assert (kl_estimate(logp, ref, "k2") >= 0).all()


def test_k1_k3_expectation_is_exact_kl():
    # Σ_a p(a)·k(a) over the whole vocabulary equals KL(p‖q) for k1 and k3
    torch.manual_seed(1)
    logp = torch.log_softmax(torch.randn(10), -1)
    ref = torch.log_softmax(torch.randn(10), -1)
    kl = (logp.exp() * (logp - ref)).sum()
    for kind in ("k1", "k3"):
        assert_close((logp.exp() * kl_estimate(logp, ref, kind)).sum(), kl)


def test_unknown_estimator():
    with pytest.raises(ValueError, match="k4"):
        kl_estimate(torch.zeros(1), torch.zeros(1), "k4")


def test_shaped_rewards_ragged_hand():
    # β = 0.5, k1 = 0.1 on every token -> −0.05 per valid token; score on the last valid one
    # row 0 (len 3, score 1): [−0.05, −0.05, −0.05 + 1]
    # row 1 (len 1, score 2): [−0.05 + 2, 0, 0]
    # row 2 (len 0, score 3): all zeros, no crash
    ref = torch.zeros(3, 3)
    logp = ref + 0.1
    mask = torch.tensor([[1.0, 1, 1], [1, 0, 0], [0, 0, 0]])
    rewards, kl = kl_shaped_rewards(torch.tensor([1.0, 2.0, 3.0]), logp, ref, mask, 0.5)
    assert_close(rewards, torch.tensor([[-0.05, -0.05, 0.95], [1.95, 0, 0], [0, 0, 0]]))
    assert_close(kl, torch.tensor([[0.1, 0.1, 0.1], [0.1, 0, 0], [0, 0, 0]]))


def test_shaped_rewards_sum_is_score_minus_beta_kl():
    torch.manual_seed(2)
    logp, ref = torch.randn(2, 4, 6)
    mask = (torch.arange(6)[None] < torch.tensor([[6], [4], [1], [3]])).float()
    scores = torch.randn(4)
    rewards, kl = kl_shaped_rewards(scores, logp, ref, mask, 0.2, kind="k3")
    assert_close(rewards.sum(1), scores - 0.2 * kl.sum(1))
    assert (rewards[mask == 0] == 0).all() and (kl[mask == 0] == 0).all()


def test_kl_penalty_loss_hand_and_grad():
    # k1 on valid tokens [0.2, −0.4, 0.5] -> mean 0.1; padding token (9.0) ignored
    ref = torch.zeros(1, 4, requires_grad=True)
    logp = torch.tensor([[0.2, -0.4, 0.5, 9.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1, 1, 0]])
    loss = kl_penalty_loss(logp, ref, mask, "k1")
    assert_close(loss, torch.tensor(0.1))
    loss.backward()
    assert_close(logp.grad, torch.tensor([[1 / 3, 1 / 3, 1 / 3, 0.0]]))
    assert ref.grad is None


def test_fixed_controller():
    c = FixedKLController(0.05)
    c.update(100.0, 512)
    assert c.value == 0.05
    d = FixedKLController(1.0)
    d.load_state_dict(c.state_dict())
    assert d.value == 0.05


def test_adaptive_controller_hand():
    # target 6, horizon 10000, β0 = 0.1
    # KL 9: e = clip(9/6 − 1 = 0.5) = 0.2;  β = 0.1·(1 + 0.2·256/10000) = 0.100512
    # KL 3: e = clip(−0.5) = −0.2;  β = 0.100512·(1 − 0.2·512/10000) = 0.09948275712
    # KL 6.6: e = 0.1 (inside the clip);    β ·= 1 + 0.1·1000/10000 = 1.01
    c = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    c.update(9.0, 256)
    assert c.value == pytest.approx(0.100512)
    c.update(3.0, 512)
    assert c.value == pytest.approx(0.09948275712)
    c.update(6.6, 1000)
    assert c.value == pytest.approx(0.09948275712 * 1.01)


def test_adaptive_state_roundtrip():
    c = AdaptiveKLController(0.1, 6.0, 10000)
    c.update(9.0, 256)
    d = AdaptiveKLController(1.0, 1.0, 1)
    d.load_state_dict(c.state_dict())
    assert isinstance(c.state_dict(), dict)
    c.update(2.0, 64)
    d.update(2.0, 64)
    assert d.value == c.value


def test_make_kl_controller():
    assert isinstance(make_kl_controller("fixed", 0.1, 6.0, 100), FixedKLController)
    a = make_kl_controller("adaptive", 0.1, 6.0, 100)
    assert isinstance(a, AdaptiveKLController) and a.value == 0.1
    with pytest.raises(ValueError, match="'pid'"):
        make_kl_controller("pid", 0.1, 6.0, 100)
