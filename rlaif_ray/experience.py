"""From a scored rollout batch to PPO training targets (pure; runs inside each learner).

    scores        = labeler rewards (non-finite ones dropped: their rows leave the update)
    token_rewards = score on the last token − β·KL_t on every token   (KL in the reward)
                  = score on the last token                          (KL in the loss)
    advantages, returns = estimator(token_rewards, values, mask)      (ppo / grpo / rloo / reinforce_pp)

Every learner computes this over the whole batch (it is a few kB of arithmetic): group
baselines and whitening need all rows, and no extra actor or round trip is needed.

`display_samples` picks a few rows of the batch for a person to read (RUN_DIR/samples.jsonl,
TensorBoard text): only the learner holds prompts, responses, per-source rewards and KL together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rlaif_ray.algorithms import AdvantageInputs, estimate_advantages, kl_estimate, kl_shaped_rewards, masked_mean
from rlaif_ray.batch import RolloutBatch
from rlaif_ray.config import RunConfig
from rlaif_ray.rewards import combine_rewards


@dataclass
class Experience:
    batch: RolloutBatch
    mask: torch.Tensor          # (B, T) 1 on response tokens of rows kept for the update
    old_logp: torch.Tensor      # (B, T) log π_old(a_t | s_t), recomputed by the learner
    ref_logp: torch.Tensor      # (B, T) log π_ref(a_t | s_t)
    values: torch.Tensor | None  # (B, T) V_old(s_t) (PPO), else None
    advantages: torch.Tensor    # (B, T)
    returns: torch.Tensor | None  # (B, T) value targets (PPO), else None


def build_experience(cfg: RunConfig, batch: RolloutBatch, source_rewards: dict[str, np.ndarray],
                     ref_logp: np.ndarray, old_logp: np.ndarray, values: np.ndarray | None,
                     entropy: np.ndarray, kl_coef: float) -> tuple[Experience, dict]:
    """Sum the reward sources, shape with the KL penalty and estimate advantages.

    `source_rewards` maps each source's name to its (B,) rewards; returns (experience, stats).
    """
    rewards, source_stats = combine_rewards(cfg.reward.sources, source_rewards)
    mask = torch.from_numpy(batch.response_mask())
    scores = torch.from_numpy(np.asarray(rewards, dtype=np.float32))
    finite = torch.isfinite(scores)
    empty = torch.from_numpy(batch.response_lens == 0)
    keep = finite & ~empty
    mask = mask * keep[:, None].float()
    scores = _fill_dropped(scores, finite, cfg.rollout.sampling.samples_per_prompt)
    if cfg.reward.objective == "paper":
        scores = (1.0 - kl_coef) * scores
    old = torch.from_numpy(old_logp)
    ref = torch.from_numpy(ref_logp)
    beta_in_reward = kl_coef if cfg.kl.placement == "reward" else 0.0
    token_rewards, kl = kl_shaped_rewards(scores, old, ref, mask, beta_in_reward, cfg.kl.estimator)
    if cfg.kl.placement == "loss":  # still measure the KL for metrics and the controller
        _, kl = kl_shaped_rewards(scores, old, ref, mask, 1.0, cfg.kl.estimator)
    v = torch.from_numpy(values) if values is not None else None
    adv, ret = estimate_advantages(cfg.ppo.algorithm, AdvantageInputs(
        token_rewards=token_rewards, mask=mask, values=v,
        group_size=cfg.rollout.sampling.samples_per_prompt, gamma=cfg.ppo.gamma, lam=cfg.ppo.lam))
    adv = adv * mask
    seq_kl = kl.sum(-1)
    kept = keep.float()
    n_kept = max(float(kept.sum()), 1.0)
    raw = torch.from_numpy(np.asarray(rewards, dtype=np.float32))[finite]
    stats = {
        "reward/mean": float(raw.mean()) if raw.numel() else float("nan"),
        "reward/std": float(raw.std(unbiased=False)) if raw.numel() else float("nan"),
        "kl/mean": float((seq_kl * kept).sum() / n_kept),
        "kl/token_mean": float(masked_mean(kl, mask)),
        "kl/coef": float(kl_coef),
        "entropy": float(masked_mean(torch.from_numpy(entropy), mask)),
        "advantages/mean": float(masked_mean(adv, mask)),
        "response_length/mean": float(batch.response_lens.mean()) if len(batch) else 0.0,
        "data/nonfinite_rewards": int((~finite).sum()),
        "data/empty_responses": int(empty.sum()),
        "data/samples": len(batch),
    }
    stats.update(source_stats)
    if ret is not None:
        stats["returns/mean"] = float(masked_mean(ret, mask))
    return Experience(batch, mask, old, ref, v, adv, ret), stats


def _fill_dropped(scores: torch.Tensor, finite: torch.Tensor, group_size: int) -> torch.Tensor:
    """Give a dropped (non-finite) score its group's mean of the finite ones (0 if none).

    The row itself is masked out of the update; the fill only keeps it from dragging the
    group baselines of grpo/rloo (and whitening) towards an arbitrary value.
    """
    groups = scores.view(-1, group_size) if scores.numel() % group_size == 0 else scores.view(1, -1)
    ok = finite.view(groups.shape)
    safe = torch.where(ok, groups, torch.zeros_like(groups))
    mean = safe.sum(-1, keepdim=True) / ok.sum(-1, keepdim=True).clamp(min=1)
    return torch.where(ok, groups, mean.expand_as(groups)).reshape(-1)


def choose_samples(n_rows: int, k: int, seed: int, iteration: int) -> np.ndarray:
    """Rows of an iteration's batch shown as samples: min(k, n_rows) distinct rows, sorted.

    Seeded by (run seed, iteration) only, so a rerun or a resumed run shows the same rows of
    the same iteration; k = 0 shows none. (K,) int64.
    """
    if k <= 0 or n_rows <= 0:
        return np.empty(0, dtype=np.int64)
    rng = np.random.default_rng([seed, iteration, 0x5A4D])  # 0x5A4D: a stream of its own
    return np.sort(rng.choice(n_rows, size=min(k, n_rows), replace=False)).astype(np.int64)


def display_samples(cfg: RunConfig, exp: Experience, source_rewards: dict[str, np.ndarray],
                    iteration: int) -> list[dict]:
    """`run.log_samples` rows of the batch as JSON-ready dicts for a person to read.

    Each: iteration, policy version, prompt position and sample index, prompt, response, its
    length in tokens, every source's reward by name, `reward` = the weighted sum of the
    sources (before any KL term) and `kl` = Σ_t KL_t over the response (cfg.kl.estimator,
    nats per sequence). A non-finite value is None.
    """
    b = exp.batch
    rows = choose_samples(len(b), cfg.run.log_samples, cfg.run.seed, iteration)
    if rows.size == 0:
        return []
    total, _ = combine_rewards(cfg.reward.sources, source_rewards)
    # Over the whole response, not the update mask: a row dropped for a non-finite reward
    # still shows how far it is from the reference.
    mask = torch.from_numpy(b.response_mask()) > 0
    kl = torch.where(mask, kl_estimate(exp.old_logp, exp.ref_logp, cfg.kl.estimator), torch.zeros(()))
    seq_kl = kl.sum(-1)
    return [{"iteration": iteration, "policy_version": int(b.policy_version),
             "prompt_index": int(b.prompt_index[i]), "sample_index": int(b.sample_index[i]),
             "prompt": b.prompts[i], "response": b.responses[i], "response_tokens": int(b.response_lens[i]),
             "rewards": {s.label: _finite_or_none(source_rewards[s.label][i]) for s in cfg.reward.sources},
             "reward": _finite_or_none(total[i]) if total is not None else None,
             "kl": _finite_or_none(seq_kl[i])}
            for i in rows.tolist()]


def _finite_or_none(x) -> float | None:
    v = float(x)
    return v if np.isfinite(v) else None
