"""build_experience: KL shaping, dropped rows, objectives and stats on a hand-worked batch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlaif_ray.batch import build_shard
from rlaif_ray.config import load_config
from rlaif_ray.experience import build_experience
from rlaif_ray.rewards import combine_rewards

BETA = 0.1
PAD = 9.0  # garbage in padded logprob columns: must never leak into KL or rewards


def _cfg(repo_root, *overrides):
    # local.yaml: group size 4 (samples_per_prompt), k1 KL in the reward, objective kl_penalty.
    return load_config(repo_root / "configs/local.yaml", list(overrides))


def _batch(response_lens=(2, 1, 3, 2)):
    """One prompt, 4 samples (one group), T = 3."""
    responses = [list(range(10, 10 + n)) for n in response_lens]
    return build_shard(
        prompt_ids=[[1, 2]] * 4, response_ids=responses,
        response_logp=[[-0.5] * n for n in response_lens],
        prompt_index=[0] * 4, sample_index=[0, 1, 2, 3], prompts=["p"] * 4,
        responses=[" ".join(map(str, r)) for r in responses], max_response_len=3, policy_version=0)


# old_logp − ref_logp = k1 per token (P = padding):
#   row 0: [-1.0, -2.0, P] − [-1.5, -1.0, P] = [ 0.5, -1.0]        Σ = -0.5
#   row 1: [-0.5, P,    P] − [-1.0, P,    P] = [ 0.5]              Σ =  0.5
#   row 2: [-1.0, -1.0, -1.0] − [-2.0, -1.0, -0.5] = [1, 0, -0.5]  Σ =  0.5
#   row 3: [-0.2, -0.4, P] − [-0.2, -0.4, P] = [0, 0]              Σ =  0
OLD = np.array([[-1.0, -2.0, PAD], [-0.5, PAD, PAD], [-1.0, -1.0, -1.0], [-0.2, -0.4, PAD]], np.float32)
REF = np.array([[-1.5, -1.0, -PAD], [-1.0, -PAD, PAD], [-2.0, -1.0, -0.5], [-0.2, -0.4, 0.0]], np.float32)
# Scores chosen so that score − β·ΣKL is round: 4.95 + 0.05 = 5, 3.05 − 0.05 = 3, 9.05 − 0.05 = 9, 7 − 0 = 7.
SCORES = np.array([4.95, 3.05, 9.05, 7.0], np.float32)
ENTROPY = np.array([[1.0, 2.0, PAD], [3.0, PAD, PAD], [1.0, 1.0, 1.0], [2.0, 2.0, PAD]], np.float32)


def _rewards(scores, truth=None):
    truth = np.zeros(len(scores), np.float32) if truth is None else truth
    return {"labeler_direct": np.asarray(scores, np.float32), "ground_truth": truth}


def _build(cfg, scores=SCORES, batch=None, values=None, kl_coef=BETA, **kw):
    batch = batch or _batch()
    total, source_stats = combine_rewards(cfg.reward.sources, _rewards(scores, **kw))
    return build_experience(cfg, batch, total, source_stats, REF, OLD, values, ENTROPY, kl_coef)


def test_grpo_advantages_from_kl_shaped_rewards(repo_root):
    cfg = _cfg(repo_root, "ppo.algorithm=grpo")
    exp, stats = _build(cfg)
    # Sequence reward Σ_t r_t = score − β·ΣKL = [5, 3, 9, 7]; one group of 4:
    #   mean 6, deviations [-1, -3, 3, 1], population var (1 + 9 + 9 + 1)/4 = 5, std √5 = 2.236068
    #   A = dev / (std + 1e-6) = [-0.447213, -1.341640, 1.341640, 0.447213], broadcast on the mask.
    a = 1 / (math.sqrt(5) + 1e-6)
    want = torch.tensor([[-a, -a, 0], [-3 * a, 0, 0], [3 * a, 3 * a, 3 * a], [a, a, 0]])
    torch.testing.assert_close(exp.advantages, want)
    assert exp.returns is None and exp.values is None
    torch.testing.assert_close(exp.mask, torch.tensor([[1., 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0]]))
    # advantages/mean over the 8 valid tokens: (−2a − 3a + 9a + 2a)/8 = 6a/8 = 0.335410
    assert stats["advantages/mean"] == pytest.approx(0.335410, abs=1e-5)
    # kl/mean: mean over rows of ΣKL = (−0.5 + 0.5 + 0.5 + 0)/4 = 0.125
    assert stats["kl/mean"] == pytest.approx(0.125, abs=1e-6)
    # kl/token_mean: Σ KL_t / valid tokens = 0.5 / 8 = 0.0625
    assert stats["kl/token_mean"] == pytest.approx(0.0625, abs=1e-6)
    # reward/mean: raw scores (4.95 + 3.05 + 9.05 + 7)/4 = 6.0125
    assert stats["reward/mean"] == pytest.approx(6.0125, abs=1e-5)
    # entropy over valid tokens: (1 + 2 + 3 + 1 + 1 + 1 + 2 + 2)/8 = 13/8
    assert stats["entropy"] == pytest.approx(1.625)
    assert stats["kl/coef"] == pytest.approx(BETA)
    # response_length/mean = (2 + 1 + 3 + 2)/4
    assert stats["response_length/mean"] == 2.0
    assert (stats["data/samples"], stats["data/nonfinite_rewards"], stats["data/empty_responses"]) == (4, 0, 0)
    # Per-source stats come along (the logged-only ground-truth source too).
    assert stats["reward/labeler_direct/mean"] == pytest.approx(6.0125, abs=1e-5)
    assert stats["reward/ground_truth/mean"] == 0.0


def test_token_rewards_seen_through_ppo_returns(repo_root):
    # PPO with V = 0, γ = λ = 1: returns are the reward-to-go of the shaped token rewards,
    # r_t = −β·KL_t (+ score on the last valid token):
    #   row 0: [−0.05, 0.1 + 4.95 = 5.05, 0]  → returns [5.0, 5.05, 0]
    #   row 1: [−0.05 + 3.05 = 3.0, 0, 0]     → [3.0, 0, 0]
    #   row 2: [−0.1, 0, 0.05 + 9.05 = 9.1]   → [9.0, 9.1, 9.1]
    #   row 3: [0, 7.0, 0]                    → [7.0, 7.0, 0]
    cfg = _cfg(repo_root, "ppo.lam=1.0", "ppo.gamma=1.0")
    exp, stats = _build(cfg, values=np.zeros((4, 3), np.float32))
    want = torch.tensor([[5.0, 5.05, 0], [3.0, 0, 0], [9.0, 9.1, 9.1], [7.0, 7.0, 0]])
    torch.testing.assert_close(exp.returns, want)
    # returns/mean = (5 + 5.05 + 3 + 9 + 9.1 + 9.1 + 7 + 7)/8 = 54.25/8
    assert stats["returns/mean"] == pytest.approx(54.25 / 8, abs=1e-5)
    # Advantages are whitened over valid tokens: mean 0 there, 0 on padding.
    assert stats["advantages/mean"] == pytest.approx(0.0, abs=1e-6)
    assert torch.all(exp.advantages[exp.mask == 0] == 0)


def test_kl_in_loss_keeps_rewards_unshaped_but_reports_kl(repo_root):
    cfg = _cfg(repo_root, "kl.placement=loss", "ppo.lam=1.0")
    exp, stats = _build(cfg, values=np.zeros((4, 3), np.float32))
    # Only the score, on the last valid token: reward-to-go = score up to the last token.
    s = SCORES
    want = torch.tensor([[s[0], s[0], 0], [s[1], 0, 0], [s[2], s[2], s[2]], [s[3], s[3], 0]])
    torch.testing.assert_close(exp.returns, want)
    # The KL is still measured: same values as with KL in the reward.
    assert stats["kl/mean"] == pytest.approx(0.125, abs=1e-6)
    assert stats["kl/token_mean"] == pytest.approx(0.0625, abs=1e-6)


def test_paper_objective_scales_the_score(repo_root):
    # RLAIF eq. 2: (1 − β)·r − β·KL. With β = 0.1, row 1 (one token, KL 0.5):
    #   0.9 · 3.05 − 0.1 · 0.5 = 2.745 − 0.05 = 2.695; row 3 (KL 0): 0.9 · 7 = 6.3
    cfg = _cfg(repo_root, "reward.objective=paper", "ppo.lam=1.0")
    exp, stats = _build(cfg, values=np.zeros((4, 3), np.float32))
    assert exp.returns[1, 0].item() == pytest.approx(2.695, abs=1e-5)
    torch.testing.assert_close(exp.returns[3], torch.tensor([6.3, 6.3, 0.0]))
    # row 2: [−0.1, 0, 0.05 + 0.9·9.05 = 8.195] → returns [8.095, 8.195, 8.195]
    torch.testing.assert_close(exp.returns[2], torch.tensor([8.095, 8.195, 8.195]))
    # reward/mean reports the labeler's raw score, not the scaled one.
    assert stats["reward/mean"] == pytest.approx(6.0125, abs=1e-5)


def test_nonfinite_rewards_are_dropped_and_counted(repo_root):
    cfg = _cfg(repo_root, "ppo.algorithm=grpo")
    scores = np.array([np.nan, 3.05, np.inf, 7.0], np.float32)
    exp, stats = _build(cfg, scores=scores)
    assert stats["data/nonfinite_rewards"] == 2
    # Dropped rows leave the update: mask rows 0 and 2 are zero, and so are their advantages.
    torch.testing.assert_close(exp.mask, torch.tensor([[0., 0, 0], [1, 0, 0], [0, 0, 0], [1, 1, 0]]))
    assert torch.all(exp.advantages[[0, 2]] == 0)
    assert torch.isfinite(exp.advantages).all()
    # reward/mean ignores NaN/inf: (3.05 + 7)/2 = 5.025
    assert stats["reward/mean"] == pytest.approx(5.025, abs=1e-5)
    assert math.isfinite(stats["reward/std"])
    # kl/mean over kept rows only: (0.5 + 0)/2 = 0.25; kl/token_mean over kept tokens 0.5/3
    assert stats["kl/mean"] == pytest.approx(0.25, abs=1e-6)
    assert stats["kl/token_mean"] == pytest.approx(0.5 / 3, abs=1e-6)


def test_all_rewards_nonfinite(repo_root):
    cfg = _cfg(repo_root, "ppo.algorithm=grpo")
    exp, stats = _build(cfg, scores=np.full(4, np.nan, np.float32))
    assert stats["data/nonfinite_rewards"] == 4
    assert math.isnan(stats["reward/mean"]) and math.isnan(stats["reward/std"])
    assert stats["kl/mean"] == 0.0
    assert float(exp.mask.sum()) == 0.0 and torch.all(exp.advantages == 0)


def test_empty_responses_are_counted_and_masked(repo_root):
    cfg = _cfg(repo_root, "ppo.algorithm=grpo")
    batch = _batch(response_lens=(2, 0, 3, 2))
    exp, stats = _build(cfg, batch=batch)
    assert stats["data/empty_responses"] == 1
    assert stats["data/nonfinite_rewards"] == 0
    assert float(exp.mask[1].sum()) == 0.0 and torch.all(exp.advantages[1] == 0)
    # Row 1 has no tokens, so its padded logprob columns never count:
    # kl/mean over kept rows (−0.5 + 0.5 + 0)/3 = 0; response_length/mean = 7/4
    assert stats["kl/mean"] == pytest.approx(0.0, abs=1e-6)
    assert stats["response_length/mean"] == 1.75


def test_dropped_score_takes_its_group_mean():
    from rlaif_ray.experience import _fill_dropped

    scores = torch.tensor([1.0, float("nan"), 3.0, 5.0, float("nan"), float("inf"), 2.0, 2.0])
    filled = _fill_dropped(scores, torch.isfinite(scores), group_size=4)
    # group 1: mean of (1, 3, 5) = 3; group 2: mean of (2, 2) = 2
    assert filled.tolist() == [1.0, 3.0, 3.0, 5.0, 2.0, 2.0, 2.0, 2.0]


def _behaviour_batch(shift):
    """_batch() with the engine's logprobs rollout_logp = OLD − shift[row] on the valid tokens."""
    lens = (2, 1, 3, 2)
    responses = [list(range(10, 10 + n)) for n in lens]
    return build_shard(
        prompt_ids=[[1, 2]] * 4, response_ids=responses,
        response_logp=[[float(OLD[i, t]) - shift[i] for t in range(n)] for i, n in enumerate(lens)],
        prompt_index=[0] * 4, sample_index=[0, 1, 2, 3], prompts=["p"] * 4,
        responses=[" ".join(map(str, r)) for r in responses], max_response_len=3, policy_version=0)


def test_off_policy_stats_from_rollout_logp(repo_root):
    # rollout_logp = old − 0.5 on all 8 valid tokens: ρ = π_old/π_behaviour = e^0.5 = 1.648721 < C = 2
    #   weight_mean = weight_max = e^0.5, truncated_share = 0,
    #   mismatch_kl (k3) = ρ − 1 − ln ρ = e^0.5 − 1 − 0.5 = 0.148721
    cfg = _cfg(repo_root, "ppo.algorithm=grpo")
    assert cfg.ppo.off_policy_correction == "none" and cfg.ppo.importance_cap == 2.0
    _, stats = _build(cfg, batch=_behaviour_batch([0.5] * 4))
    e5 = math.exp(0.5)
    assert stats["off_policy/weight_mean"] == pytest.approx(e5, rel=1e-6)
    assert stats["off_policy/weight_max"] == pytest.approx(e5, rel=1e-6)
    assert stats["off_policy/truncated_share"] == 0.0
    assert stats["off_policy/mismatch_kl"] == pytest.approx(e5 - 1.5, rel=1e-5)
    # The engine's logprobs change no other number (same as test_grpo_advantages_from_kl_shaped_rewards).
    assert stats["kl/token_mean"] == pytest.approx(0.0625, abs=1e-6)
    assert stats["advantages/mean"] == pytest.approx(0.335410, abs=1e-5)


def test_off_policy_stats_decoupled_and_update_mask(repo_root):
    # Row 1 (one token) has rollout_logp = old − 1: ρ = e = 2.718282 > C = 2; the other 7 tokens ρ = e^0.5.
    cfg = _cfg(repo_root, "ppo.algorithm=grpo", "ppo.off_policy_correction=decoupled")
    batch = _behaviour_batch([0.5, 1.0, 0.5, 0.5])
    e5 = math.exp(0.5)
    _, stats = _build(cfg, batch=batch)
    # 1 of 8 valid tokens above C, dropped by decoupled: mean/max of ρ over the 7 kept = e^0.5
    assert stats["off_policy/truncated_share"] == pytest.approx(1 / 8)
    assert stats["off_policy/weight_mean"] == pytest.approx(e5, rel=1e-6)
    assert stats["off_policy/weight_max"] == pytest.approx(e5, rel=1e-6)
    # k3 over all 8 valid tokens: (7·(e^0.5 − 1.5) + (e − 1 − 1))/8 = (1.041047 + 0.718282)/8 = 0.219916
    assert stats["off_policy/mismatch_kl"] == pytest.approx((7 * (e5 - 1.5) + (math.e - 2)) / 8, rel=1e-5)
    # A non-finite score drops row 1 from the update mask, and from these stats with it.
    _, stats = _build(cfg, batch=batch, scores=np.array([4.95, np.nan, 9.05, 7.0], np.float32))
    assert stats["off_policy/truncated_share"] == 0.0
    assert stats["off_policy/mismatch_kl"] == pytest.approx(e5 - 1.5, rel=1e-5)
