"""The embedded default, end to end: 1 rollout actor, 1 labeler, 1 reference, 1 learner, PPO
with a critic, 12 iterations — every required metric every iteration, an exact weight sync,
and visible learning against both the labeler and the task's own ground truth; the same
thresholds hold for the pipelined loop (`pipeline.max_staleness: 1` with TIS)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlaif_ray.driver.run import train_run
from rlaif_ray.run_dir import read_metrics

REQUIRED = ["iteration", "policy_version", "reward/mean", "reward/std", "kl/mean", "entropy",
            "loss/policy", "loss/value", "clipfrac", "response_length/mean",
            "throughput/tokens_per_s", "timing/rollout", "timing/reward", "timing/reference",
            "timing/values", "timing/train", "timing/sync", "timing/iteration"]


PIPELINED = ("pipeline.max_staleness=1", "ppo.off_policy_correction=tis")


@pytest.fixture(params=["synchronous", "pipelined"])
def run(request, warm_roles, make_config, tmp_path):
    """configs/local.yaml as shipped (the session's run, tests/e2e/conftest.py), and with k = 1."""
    if request.param == "synchronous":
        return request.getfixturevalue("default_run")
    cfg = make_config(*PIPELINED)
    return cfg, tmp_path / "run", train_run(cfg, tmp_path / "run", progress=False, warm=warm_roles)


@pytest.mark.slow
def test_default_run_learns(run):
    cfg, run_dir, summary = run
    assert (cfg.rollout.num_actors, cfg.labeler.num_actors, cfg.learner.num_workers) == (1, 1, 1)
    rows = read_metrics(run_dir)
    assert [r["iteration"] for r in rows] == list(range(1, cfg.run.iterations + 1))
    assert [r["policy_version"] for r in rows] == list(range(1, cfg.run.iterations + 1))
    for row in rows:
        for key in REQUIRED:
            assert key in row and row[key] is not None and math.isfinite(row[key]), (row["iteration"], key)
        # The probe runs on iteration 1 always, then every sync.probe_every-th (1 here: every row).
        assert row.get("sync/max_logprob_diff", 0.0) <= 1e-4, row
    assert "sync/max_logprob_diff" in rows[0]
    assert all("sync/max_logprob_diff" in r for r in rows) == (cfg.sync.probe_every == 1)

    def first_last(key):
        v = np.array([r[key] for r in rows])
        return v[:3], v[-3:]

    first, last = first_last("reward/mean")
    se = math.hypot(first.std(ddof=1) / math.sqrt(3), last.std(ddof=1) / math.sqrt(3))
    gain = last.mean() - first.mean()
    print(f"reward first 3 {first.mean():+.3f} last 3 {last.mean():+.3f} gain {gain:.3f} (SE {se:.3f})")
    assert gain > max(0.3, 3 * se), (first, last)
    gt_first, gt_last = first_last("reward/ground_truth/mean")
    assert gt_last.mean() - gt_first.mean() > 0.3, (gt_first, gt_last)
    assert all(math.isfinite(r["kl/mean"]) for r in rows)
    assert summary["iterations"] == cfg.run.iterations
    assert max(r["pipeline/staleness/max"] for r in rows) == cfg.pipeline.max_staleness
    assert (run_dir / "checkpoints").exists()  # the final checkpoint
