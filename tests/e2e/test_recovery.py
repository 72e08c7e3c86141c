"""Failure recovery on real actors: a rollout actor killed mid-iteration and a labeler that
stalls past its timeout are replaced and their work redone; a dead learner stops the run
with a resume hint, and --resume finishes it."""

from __future__ import annotations

import pytest

from rlaif_ray.driver.run import train_run
from rlaif_ray.errors import RunStopped
from rlaif_ray.run_dir import read_metrics


@pytest.mark.slow
def test_dead_rollout_and_stalled_labeler_are_replaced(warm_roles, make_config, tmp_path):
    cfg = make_config(
        "run.iterations=3", "data.prompts_per_iteration=8", "ppo.minibatch_size=16", "run.call_timeout_s=20",
        "rollout.num_actors=2",  # a healthy rollout-1 beside the one killed: only rollout-0's half is redone
        "chaos.faults=[{role: rollout, actor: 0, iteration: 2, kind: kill},"
        " {role: labeler, actor: 0, iteration: 3, kind: stall, stall_s: 120}]")
    train_run(cfg, tmp_path / "run", progress=False, warm=warm_roles)
    rows = read_metrics(tmp_path / "run")
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    # Every iteration still has all 8 prompts × 4 samples: nothing of the killed actor is lost.
    assert all(r["data/samples"] == 32 for r in rows)
    assert rows[0]["recovery/redone_prompts"] == 0
    assert rows[1]["recovery/redone_prompts"] == 4    # rollout-0's half of the 8 prompts
    assert rows[1]["recovery/actor_restarts"] == 1
    assert rows[2]["recovery/actor_restarts"] == 2    # + the stalled labeler
    assert rows[2]["recovery/redone_prompts"] == 12   # + the labeler's share: all 8 prompts
    assert rows[2]["recovery/labeler/restarts"] == 1 and rows[2]["recovery/rollout/redone_prompts"] == 4
    # The replacement rollout-0 got the current weights: the probe reads engine 0.
    # (A replacement always brings a probe, whatever sync.probe_every says.)
    assert all(r["sync/max_logprob_diff"] <= 1e-4 for r in rows if "sync/max_logprob_diff" in r)
    assert "sync/max_logprob_diff" in rows[1]


@pytest.mark.slow
def test_lost_learner_past_its_restarts_stops_with_resume_hint(warm_roles, make_config, tmp_path):
    run_dir = tmp_path / "run"
    cfg = make_config("run.iterations=3", "run.checkpoint_every=1", "data.prompts_per_iteration=4", "run.max_learner_restarts=0",
                      "ppo.minibatch_size=16", "chaos.faults=[{role: learner, actor: 0, iteration: 2}]")
    with pytest.raises(RunStopped) as stop:
        train_run(cfg, run_dir, progress=False, warm=warm_roles)
    message = str(stop.value)
    assert "learner" in message and f"--resume {run_dir}" in message and "iter-000001" in message
    resumed = cfg.model_copy(update={"chaos": cfg.chaos.model_copy(update={"faults": []})})
    train_run(resumed, run_dir, resume=True, progress=False, warm=warm_roles)
    assert [r["iteration"] for r in read_metrics(run_dir)] == [1, 2, 3]
