"""The learner group below end-to-end: two real `LearnerWorker` actors (DeepSpeed over gloo,
the tiny policy) take one PPO step on a hand-made batch, and everything rank 0 reports about
the batch equals the same experience computed in this process from the same inputs. This
checks the step's plumbing: each rank's old logprobs all-gathered in row order, the rewards
combined once on rank 0 and broadcast, the arguments being all the step reads."""

from __future__ import annotations

import numpy as np
import pytest
import ray
import torch

from rlaif_ray.batch import RolloutBatch, build_shard
from rlaif_ray.driver.roles import start_learners
from rlaif_ray.experience import build_experience
from rlaif_ray.modeling import load_causal_lm, response_logprobs
from rlaif_ray.rewards import batch_rewards

T = 5           # response tokens
PROMPTS = 2     # × samples_per_prompt 4 = 8 rows, two shards of 4


def _shard(first_prompt: int, rng: np.random.Generator) -> RolloutBatch:
    rows = [(p, k) for p in range(first_prompt, first_prompt + 1) for k in range(4)]
    lens = rng.integers(1, T + 1, size=len(rows))
    responses = [rng.integers(3, 1000, size=n).tolist() for n in lens]
    return build_shard(prompt_ids=[[1, 50 + p, 60 + p] for p, _ in rows], response_ids=responses,
                       response_logp=[[-1.0] * n for n in lens], prompt_index=[p for p, _ in rows],
                       sample_index=[k for _, k in rows], prompts=[f"prompt {p}" for p, _ in rows],
                       responses=["bright sun" if k % 2 else "grey" for _, k in rows], max_response_len=T,
                       policy_version=0)


@pytest.fixture(scope="module")
def step(ray_local, make_config):
    """The inputs of one PPO step and what the two-rank group returned for them."""
    cfg = make_config("learner.num_workers=2", "ppo.algorithm=grpo", "ppo.minibatch_size=8",
                      "learner.forward_batch_size=3", "data.prompts_per_iteration=2")
    rng = np.random.default_rng(0)
    shards = [_shard(p, rng) for p in range(PROMPTS)]
    labeler = [rng.uniform(-1, 1, size=4).astype(np.float32) for _ in shards]
    ref = [(-1.5 + 0.1 * rng.standard_normal((4, T))).astype(np.float32) for _ in shards]
    learners, setups = start_learners(cfg)
    ray.get(setups)
    try:
        label = next(s.label for s in cfg.reward.sources if s.kind == "labeler_direct")
        out = ray.get([a.ppo_step.remote([ray.put(s) for s in shards], {label: [ray.put(r) for r in labeler]},
                                         [ray.put(r) for r in ref], 0.05, 0) for a in learners.actors])
    finally:
        learners.shutdown()
    return cfg, RolloutBatch.concat(shards), np.concatenate(labeler), np.concatenate(ref), out


@pytest.mark.slow
def test_rank0_reports_the_experience_of_its_inputs(step):
    cfg, batch, labeler, ref, out = step
    policy = load_causal_lm(cfg.model.policy)
    with torch.no_grad():
        old, ent = response_logprobs(policy, batch, cfg.rollout.sampling.temperature, with_entropy=True)
    label = next(s.label for s in cfg.reward.sources if s.kind == "labeler_direct")
    total, _, source_stats = batch_rewards(cfg.reward.sources, batch.prompts, batch.responses, {label: labeler})
    _, want = build_experience(cfg, batch, total, source_stats, ref, old.numpy(), None, ent.numpy(), 0.05)
    got = out[0]["experience"]
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert out[1]["experience"] is None and out[1]["samples"] == []        # rank 0 answers for the batch
    assert len(out[0]["samples"]) == cfg.run.log_samples


@pytest.mark.slow
def test_both_ranks_took_the_same_optimiser_steps(step):
    cfg, batch, _, _, out = step
    assert [r["train"]["train/steps"] for r in out] == [cfg.ppo.epochs * len(batch) // cfg.ppo.minibatch_size] * 2
    assert all(np.isfinite(r["train"]["loss/policy"]) for r in out)
    assert set(out[0]["seconds"]) == {"old_logprobs", "experience", "optimise"}
