"""Each critic-free estimator runs end to end for 2 iterations (PPO itself is covered by the
default-run test), across ZeRO stages, with the reward and KL finite and the sync exact."""

from __future__ import annotations

import math

import pytest

from rlaif_ray.driver.run import train_run
from rlaif_ray.run_dir import read_metrics


@pytest.mark.slow
@pytest.mark.parametrize("algorithm,zero_stage,kl_placement", [
    ("grpo", 3, "loss"), ("rloo", 2, "reward"), ("reinforce_pp", 1, "reward")])
def test_algorithm_runs(warm_roles, make_config, tmp_path, algorithm, zero_stage, kl_placement):
    cfg = make_config(f"ppo.algorithm={algorithm}", f"learner.zero_stage={zero_stage}",
                      f"kl.placement={kl_placement}", "kl.estimator=k3" if kl_placement == "loss" else "kl.estimator=k1",
                      "run.iterations=2", "data.prompts_per_iteration=8", "ppo.minibatch_size=16",
                      "rollout.num_actors=1")
    train_run(cfg, tmp_path / "run", progress=False, warm=warm_roles)
    rows = read_metrics(tmp_path / "run")
    assert len(rows) == 2
    for row in rows:
        assert "loss/value" not in row  # no critic
        for key in ("reward/mean", "kl/mean", "loss/policy", "entropy"):
            assert math.isfinite(row[key]), (key, row)
        assert row.get("sync/max_logprob_diff", 0.0) <= 1e-4  # absent when sync.probe_every skips it


@pytest.mark.slow
def test_rollout_old_logprobs_follow_the_learner_ones(default_run, warm_roles, make_config, tmp_path):
    """`ppo.old_logprobs: rollout` on the default PPO run (critic, KL in the reward): π_old is
    the engine's sampling logprobs (no mismatch left to measure), and the first iterations
    follow the default run's, which recomputes π_old on the learner, to the engine-vs-learner
    numerics (~1e-6 a token)."""
    _, learner_dir, _ = default_run
    cfg = make_config("ppo.old_logprobs=rollout", "run.iterations=2")
    train_run(cfg, tmp_path / "run", progress=False, warm=warm_roles)
    rows, reference = read_metrics(tmp_path / "run"), read_metrics(learner_dir)[:2]
    assert len(rows) == 2
    assert rows[0]["reward/mean"] == reference[0]["reward/mean"]  # same weights, same seeds: same samples
    for row, ref in zip(rows, reference):
        assert row["off_policy/mismatch_kl"] == 0.0  # π_old is π_behaviour itself
        for key, tol in (("reward/mean", 1e-3), ("kl/mean", 1e-3), ("loss/policy", 1e-3), ("loss/value", 1e-3),
                         ("entropy", 0.05)):
            assert row[key] == pytest.approx(ref[key], abs=tol), key


@pytest.mark.slow
def test_rollout_old_logprobs_without_a_critic(warm_roles, make_config, tmp_path):
    """GRPO with KL in the loss (the `bench trl` shape) takes π_old from the engine: no policy
    forward before the updates, the entropy measured on the steps."""
    cfg = make_config("ppo.algorithm=grpo", "kl.placement=loss", "kl.estimator=k3", "ppo.old_logprobs=rollout",
                      "run.iterations=2", "data.prompts_per_iteration=8", "ppo.minibatch_size=16")
    train_run(cfg, tmp_path / "run", progress=False, warm=warm_roles)
    rows = read_metrics(tmp_path / "run")
    assert len(rows) == 2
    for row in rows:
        assert row["off_policy/mismatch_kl"] == 0.0
        assert 0.0 < row["entropy"] < 10.0
        for key in ("reward/mean", "kl/mean", "loss/policy"):
            assert math.isfinite(row[key]), (key, row)
