import math

import torch
from torch.testing import assert_close

from rlaif_ray.algorithms import compute_gae, masked_mean, ppo_policy_loss, ppo_value_loss


def _random_batch(seed=0, B=6, T=7):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(B, T, generator=g)
    values = torch.randn(B, T, generator=g)
    lengths = torch.tensor([T, 1, 0, 3, T - 1, 5])[:B]
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()
    return rewards, values, mask


def _naive_gae(rewards, values, mask, gamma, lam):
    """Per row, in python: the textbook recursion over the row's own valid length."""
    B, T = rewards.shape
    adv = torch.zeros(B, T)
    for b in range(B):
        n = int(mask[b].sum())
        last = 0.0
        for t in reversed(range(n)):
            next_v = values[b, t + 1].item() if t + 1 < n else 0.0
            delta = rewards[b, t].item() + gamma * next_v - values[b, t].item()
            last = delta + gamma * lam * last
            adv[b, t] = last
    return adv, (adv + values) * mask


def test_gae_hand():
    # γ = 0.9, λ = 0.8 (γλ = 0.72), V after the last token = 0
    # δ2 = 2 + 0       − 1.5 = 0.5    A2 = 0.5
    # δ1 = 0 + 0.9·1.5 − 1.0 = 0.35   A1 = 0.35 + 0.72·0.5  = 0.71
    # δ0 = 1 + 0.9·1.0 − 0.5 = 1.4    A0 = 1.4  + 0.72·0.71 = 1.9112
    # returns = A + V = [2.4112, 1.71, 2.0]
    rewards = torch.tensor([[1.0, 0.0, 2.0]])
    values = torch.tensor([[0.5, 1.0, 1.5]])
    adv, ret = compute_gae(rewards, values, torch.ones(1, 3), 0.9, 0.8)
    assert_close(adv, torch.tensor([[1.9112, 0.71, 0.5]]))
    assert_close(ret, torch.tensor([[2.4112, 1.71, 2.0]]))


def test_gae_ragged_row_ignores_padding():
    # mask [1, 1, 0], γ = λ = 1; padding reward 9 and value 5 must not count
    # δ1 = 2 + 0 − 1 = 1, A1 = 1;  δ0 = 1 + 1 − 1 = 1, A0 = 1 + 1 = 2;  R = [3, 2, 0]
    adv, ret = compute_gae(
        torch.tensor([[1.0, 2.0, 9.0]]), torch.tensor([[1.0, 1.0, 5.0]]),
        torch.tensor([[1.0, 1.0, 0.0]]), 1.0, 1.0,
    )
    assert_close(adv, torch.tensor([[2.0, 1.0, 0.0]]))
    assert_close(ret, torch.tensor([[3.0, 2.0, 0.0]]))


def test_gae_lambda1_gamma1_is_reward_to_go_minus_value():
    rewards, values, mask = _random_batch()
    adv, _ = compute_gae(rewards, values, mask, 1.0, 1.0)
    r = rewards * mask
    to_go = r.flip(1).cumsum(1).flip(1)
    assert_close(adv, (to_go - values) * mask)


def test_gae_lambda0_is_one_step_td():
    rewards, values, mask = _random_batch(1)
    gamma = 0.95
    adv, _ = compute_gae(rewards, values, mask, gamma, 0.0)
    next_v = torch.cat([values[:, 1:] * mask[:, 1:], torch.zeros(values.shape[0], 1)], dim=1)
    assert_close(adv, (rewards + gamma * next_v - values) * mask)


def test_gae_matches_naive_loop():
    for seed, (gamma, lam) in enumerate([(1.0, 0.95), (0.99, 0.9), (0.5, 0.3)]):
        rewards, values, mask = _random_batch(seed)
        adv, ret = compute_gae(rewards, values, mask, gamma, lam)
        exp_adv, exp_ret = _naive_gae(rewards, values, mask, gamma, lam)
        assert_close(adv, exp_adv)
        assert_close(ret, exp_ret)
        assert (adv[mask == 0] == 0).all() and (ret[mask == 0] == 0).all()


def test_policy_loss_at_ratio_one():
    torch.manual_seed(0)
    logp = torch.randn(3, 4)
    adv = torch.randn(3, 4)
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    loss, stats = ppo_policy_loss(logp, logp.clone(), adv, mask, 0.2)
    assert_close(loss, -masked_mean(adv, mask))
    assert stats["clipfrac"] == 0.0
    assert stats["approx_kl"] == 0.0
    assert_close(stats["ratio_mean"], torch.tensor(1.0))


def test_policy_loss_clipping_hand():
    # ε = 0.2.   A    r     −A·r   −A·clip(r)   max    clipped branch active?
    # token 0   +1   1.5   −1.5     −1.2        −1.2   yes
    # token 1   +1   0.5   −0.5     −0.8        −0.5   no
    # token 2   −1   0.5   +0.5     +0.8        +0.8   yes
    # token 3   −1   1.5   +1.5     +1.2        +1.5   no
    # token 4 is padding.  loss = (−1.2 − 0.5 + 0.8 + 1.5)/4 = 0.15, clipfrac = 2/4
    ratio = torch.tensor([[1.5, 0.5, 0.5, 1.5, 3.0]])
    old = torch.zeros(1, 5)
    logp = torch.log(ratio).requires_grad_()
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, 5.0]])
    mask = torch.tensor([[1.0, 1, 1, 1, 0]])
    loss, stats = ppo_policy_loss(logp, old, adv, mask, 0.2)
    assert_close(loss, torch.tensor(0.15))
    assert_close(stats["clipfrac"], torch.tensor(0.5))
    assert_close(stats["ratio_mean"], torch.tensor(1.0))
    # ½(log r)² averaged over 4 tokens: (½ln²1.5·2 + ½ln²2·2)/4
    assert_close(stats["approx_kl"], torch.tensor((math.log(1.5) ** 2 + math.log(2) ** 2) / 4))
    loss.backward()
    # d(−A·r)/dlogp = −A·r on unclipped tokens, /4 for the mean; clipped and padding: 0
    assert_close(logp.grad, torch.tensor([[0.0, -0.5 / 4, 0.0, 1.5 / 4, 0.0]]))


def test_value_loss_hand():
    # clip c = 0.2
    # token 0: old 1.0, v 1.5, R 2.0: v_clip 1.2; (v−R)² .25, (v_clip−R)² .64 -> .64 (clipped)
    # token 1: old 1.0, v 1.1, R 0.0: v_clip 1.1; both 1.21                    -> 1.21
    # token 2: old 0.0, v −1,  R 0.5: v_clip −0.2; 2.25 vs 0.49                 -> 2.25
    # token 3: padding.   loss = 0.5 · (0.64 + 1.21 + 2.25)/3 = 0.68333
    values = torch.tensor([[1.5, 1.1, -1.0, 100.0]], requires_grad=True)
    old = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    returns = torch.tensor([[2.0, 0.0, 0.5, 0.0]])
    mask = torch.tensor([[1.0, 1, 1, 0]])
    loss = ppo_value_loss(values, old, returns, mask, 0.2)
    assert_close(loss, torch.tensor(0.5 * 4.1 / 3))
    loss.backward()
    # the clipped branch is constant in v, so token 0 has no gradient
    assert values.grad[0, 0] == 0.0 and values.grad[0, 3] == 0.0
    # token 2: d/dv ½·(v−R)²/3 = (v − R)/3 = −1.5/3
    assert_close(values.grad[0, 2], torch.tensor(-0.5))
