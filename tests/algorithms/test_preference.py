import math

import pytest
import torch
from torch.testing import assert_close

from rlaif_ray.algorithms import dpo_loss, pairwise_reward_loss

LN2 = math.log(2)


def test_soft_rm_loss_half_target_equal_scores_is_log2():
    s = torch.tensor([0.3, -1.0, 2.0])
    loss, _ = pairwise_reward_loss(s, s.clone(), target_a=torch.full((3,), 0.5))
    assert_close(loss, torch.tensor(LN2))


def test_soft_rm_loss_hand():
    # t = 0.5, a − b = 2: −[½ log σ(2) + ½ log σ(−2)] = ½(0.126928 + 2.126928) = 1.126928
    loss, _ = pairwise_reward_loss(torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([0.5]))
    assert_close(loss, torch.tensor(1.1269280))


def test_hard_rm_loss_hand():
    # a − b = [2, −1]: −log σ(2) = 0.126928, −log σ(−1) = 1.313262 -> mean 0.720095
    # accuracy: A preferred by the model in pair 0 only -> 0.5; margin_mean (2 − 1)/2 = 0.5
    loss, stats = pairwise_reward_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0]))
    assert_close(loss, torch.tensor(0.7200948))
    assert_close(stats["accuracy"], torch.tensor(0.5))
    assert_close(stats["margin_mean"], torch.tensor(0.5))


def test_hard_rm_loss_with_margin_and_soft_target_one():
    # margin 1: −log σ(2 − 0 − 1) = −log σ(1) = 0.313262
    a, b = torch.tensor([2.0]), torch.tensor([0.0])
    loss, _ = pairwise_reward_loss(a, b, margin=1.0)
    assert_close(loss, torch.tensor(0.3132617))
    # soft target 1 is the hard loss
    torch.manual_seed(0)
    a, b = torch.randn(2, 8)
    assert_close(pairwise_reward_loss(a, b, torch.ones(8))[0], pairwise_reward_loss(a, b)[0])
    with pytest.raises(ValueError, match="margin"):
        pairwise_reward_loss(a, b, torch.ones(8), margin=1.0)


def test_rm_accuracy_with_soft_targets():
    # model prefers A in both pairs; label side: 0.9 -> A (match), 0.2 -> B (miss)
    target = torch.tensor([0.9, 0.2])
    _, stats = pairwise_reward_loss(torch.tensor([1.0, 1.0]), torch.zeros(2), target)
    assert_close(stats["accuracy"], torch.tensor(0.5))


def test_dpo_policy_equals_ref_is_log2():
    torch.manual_seed(0)
    pa, pb = torch.randn(2, 5) * 10
    loss, stats = dpo_loss(pa, pb, pa.clone(), pb.clone(), beta=0.1)
    assert_close(loss, torch.tensor(LN2))
    assert stats["reward_margin"] == 0 and stats["chosen_reward"] == 0
    soft, _ = dpo_loss(pa, pb, pa.clone(), pb.clone(), 0.1, target_a=torch.rand(5))
    assert_close(soft, torch.tensor(LN2))


def test_dpo_hand():
    # β = 0.1: ρ_a = 0.1·(−10 + 12) = 0.2, ρ_b = 0.1·(−15 + 14) = −0.1, h = 0.3
    # hard: −log σ(0.3) = 0.554355;  soft t = 0.25: .25·0.554355 + .75·0.854355 = 0.779355
    pa = torch.tensor([-10.0], requires_grad=True)
    ref_a = torch.tensor([-12.0], requires_grad=True)
    args = (torch.tensor([-15.0]), ref_a, torch.tensor([-14.0]), 0.1)
    loss, stats = dpo_loss(pa, *args)
    assert_close(loss, torch.tensor(0.5543552))
    assert_close(stats["reward_margin"], torch.tensor(0.3))
    assert_close(stats["chosen_reward"], torch.tensor(0.2))
    assert_close(stats["rejected_reward"], torch.tensor(-0.1))
    assert stats["reward_accuracy"] == 1.0
    loss.backward()
    # dL/dπ_a = −β·(1 − σ(h)); the reference gets no gradient
    assert_close(pa.grad, torch.tensor([-0.1 * (1 - torch.sigmoid(torch.tensor(0.3)).item())]))
    assert ref_a.grad is None
    soft, stats = dpo_loss(pa, *args, target_a=torch.tensor([0.25]))
    assert_close(soft, torch.tensor(0.7793552))
    assert stats["reward_accuracy"] == 0.0
