import dataclasses

import pytest
import torch
from torch.testing import assert_close

from rlaif_ray.algorithms import (
    ADVANTAGE_ESTIMATORS,
    AdvantageInputs,
    compute_gae,
    estimate_advantages,
    group_advantages,
    masked_mean,
    masked_var,
    needs_critic,
    reinforce_pp_returns,
)


def test_grpo_hand():
    # group [1, 2, 3, 4]: mean 2.5, population var (2.25 + .25 + .25 + 2.25)/4 = 1.25
    # -> [−1.5, −.5, .5, 1.5] / (√1.25 + eps);  constant group [10]*4 -> 0 / eps = 0
    r = torch.tensor([1.0, 2, 3, 4, 10, 10, 10, 10])
    adv = group_advantages(r, 4, "grpo")
    std = 1.25**0.5 + 1e-6
    assert_close(adv, torch.tensor([-1.5 / std, -0.5 / std, 0.5 / std, 1.5 / std, 0, 0, 0, 0]))


def test_rloo_hand():
    # leave-one-out means: [(2+3+4)/3, (1+3+4)/3, (1+2+4)/3, (1+2+3)/3] = [3, 8/3, 7/3, 2]
    r = torch.tensor([1.0, 2, 3, 4, 0, 6, 0, 6])
    adv = group_advantages(r, 4, "rloo")
    # second group: [0 − 4, 6 − 2, 0 − 4, 6 − 2]
    assert_close(adv, torch.tensor([1 - 3, 2 - 8 / 3, 3 - 7 / 3, 4 - 2, -4, 4, -4, 4]))


def test_group_errors():
    r = torch.arange(6.0)
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(r, 1, "rloo")
    with pytest.raises(ValueError, match="multiple"):
        group_advantages(r, 4, "grpo")
    with pytest.raises(ValueError, match="'mean'"):
        group_advantages(r, 2, "mean")


def test_reinforce_pp_hand():
    # γ = 0.5; row 0 rewards [0, 0, 1] -> G = [0.25, 0.5, 1]; row 1 [0, 2, (pad 7)] -> [1, 2, 0]
    # valid G = [.25, .5, 1, 1, 2], mean 0.95, var (.49 + .2025 + .0025 + .0025 + 1.1025)/5 = .36
    # whitened: (G − 0.95)/0.6 = [−7/6, −0.75, 1/12, 1/12, 1.75]
    rewards = torch.tensor([[0.0, 0, 1], [0, 2, 7]])
    mask = torch.tensor([[1.0, 1, 1], [1, 1, 0]])
    adv = reinforce_pp_returns(rewards, mask, 0.5)
    assert_close(adv, torch.tensor([[-7 / 6, -0.75, 1 / 12], [1 / 12, 1.75, 0]]))


def _inputs(values=True, group_size=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    B, T = 4, 5
    mask = (torch.arange(T)[None] < torch.tensor([[5], [3], [1], [4]])).float()
    token_rewards = torch.randn(B, T, generator=g) * mask
    v = torch.randn(B, T, generator=g) * mask if values else None
    return AdvantageInputs(token_rewards, mask, v, group_size, gamma=0.99, lam=0.95)


def test_registry_ppo():
    inp = _inputs()
    adv, ret = estimate_advantages("ppo", inp)
    raw_adv, raw_ret = compute_gae(inp.token_rewards, inp.values, inp.mask, 0.99, 0.95)
    assert_close(ret, raw_ret)  # returns are not whitened
    assert_close(masked_mean(adv, inp.mask), torch.tensor(0.0), atol=1e-5, rtol=0)
    assert_close(masked_var(adv, inp.mask), torch.tensor(1.0), atol=1e-4, rtol=0)
    assert (adv[inp.mask == 0] == 0).all()
    with pytest.raises(ValueError, match="values"):
        estimate_advantages("ppo", _inputs(values=False))


def test_registry_group_estimators_broadcast():
    # rows 0,1 are one prompt, rows 2,3 another; the sequence reward is Σ_t r_t
    inp = _inputs(values=False)
    seq = (inp.token_rewards * inp.mask).sum(1)
    for name in ("grpo", "rloo"):
        adv, ret = estimate_advantages(name, inp)
        assert ret is None
        expected = group_advantages(seq, 2, name)[:, None] * inp.mask
        assert_close(adv, expected)
    # rloo with G = 2: A_0 = r_0 − r_1
    adv, _ = estimate_advantages("rloo", inp)
    assert_close(adv[0, 0], seq[0] - seq[1])


def test_registry_reinforce_pp():
    inp = _inputs(values=False)
    adv, ret = estimate_advantages("reinforce_pp", inp)
    assert ret is None
    assert_close(adv, reinforce_pp_returns(inp.token_rewards, inp.mask, 0.99))


def test_registry_names_and_errors():
    assert set(ADVANTAGE_ESTIMATORS) == {"ppo", "grpo", "rloo", "reinforce_pp"}
    assert needs_critic("ppo") and not needs_critic("grpo")
    with pytest.raises(ValueError, match="gae.*grpo, ppo, reinforce_pp, rloo"):
        estimate_advantages("gae", _inputs())
    with pytest.raises(ValueError, match="gae"):
        needs_critic("gae")
    with pytest.raises(dataclasses.FrozenInstanceError):
        _inputs().gamma = 0.5
