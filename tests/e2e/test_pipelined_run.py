"""Pipelined mode (`pipeline.max_staleness: 1`) keeps the synchronous loop's guarantees: exact
resume (4 straight vs 3 + resume from the checkpoint at 2 + 2, the checkpoint carrying the
batch generated ahead), rollout, labeler and reference actors SIGKILLed mid-pipeline replaced
with their chunks redone (the same numbers), the staleness bound in every row, and a Ctrl-C that stops the run at once.
Real Ray actors, vLLM engines and DeepSpeed learners on the tiny models."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlaif_ray.checkpoint import latest_checkpoint, list_checkpoints
from rlaif_ray.driver.pipeline import PENDING_FILE
from rlaif_ray.driver.run import train_run
from rlaif_ray.run_dir import read_metrics

PIPELINED = ("pipeline.max_staleness=1", "ppo.off_policy_correction=tis", "data.prompts_per_iteration=4",
             "ppo.minibatch_size=16", "run.checkpoint_every=2", "learner.num_workers=2",  # a learner-1 to lose
             "rollout.num_actors=2")  # two chunks of 2 prompts: a killed engine's chunk is redone alone
NUMBERS = ("reward/mean", "kl/mean", "loss/policy", "response_length/mean", "off_policy/mismatch_kl")
REPO = Path(__file__).resolve().parents[2]
STOP_WITHIN_S = 60.0  # Ctrl-C to exit, on 2 busy cores (actors are killed, nothing drains)


@pytest.fixture(scope="module")
def straight(warm_roles, make_config, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pipelined") / "run"
    train_run(make_config("run.iterations=4", *PIPELINED), run_dir, progress=False, warm=warm_roles)
    return run_dir


def same_numbers(a: list[dict], b: list[dict]) -> None:
    assert [r["iteration"] for r in a] == [r["iteration"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b):
        for key in NUMBERS:
            assert abs(ra[key] - rb[key]) <= 1e-4, (ra["iteration"], key, ra[key], rb[key])


@pytest.mark.slow
def test_staleness_is_bounded_and_measured(straight):
    rows = read_metrics(straight)
    # Batch 1 and 2 come from v0; the learner is at v0 for 1, v1 for 2, and so on: lag 0, 1, 1, 1.
    assert [r["pipeline/staleness/max"] for r in rows] == [0, 1, 1, 1]
    assert [r["pipeline/staleness/mean"] for r in rows] == [0.0, 1.0, 1.0, 1.0]
    # At lag 0 behaviour and learner differ by numerics only; at lag 1 by one update.
    assert rows[0]["off_policy/mismatch_kl"] < 1e-6 < rows[1]["off_policy/mismatch_kl"]
    for r in rows:
        assert 0.0 <= r["off_policy/truncated_share"] <= 1.0 and r["off_policy/weight_max"] <= 2.0 + 1e-6
    samples = [json.loads(l) for l in (straight / "samples.jsonl").read_text().splitlines()]
    assert {(s["iteration"], s["policy_version"]) for s in samples} == {(1, 0), (2, 0), (3, 1), (4, 2)}


@pytest.mark.slow
def test_pipelined_resume_continues_exactly(straight, warm_roles, make_config, tmp_path):
    split = tmp_path / "split"
    train_run(make_config("run.iterations=3", *PIPELINED), split, progress=False, warm=warm_roles)
    # The checkpoint at 2 holds batch 3, generated ahead by v1 (weights the resumed run no longer has).
    assert (list_checkpoints(split)[0] / PENDING_FILE).exists()
    shutil.rmtree(latest_checkpoint(split))
    train_run(make_config("run.iterations=4", *PIPELINED), split, resume=True, progress=False, warm=warm_roles)
    same_numbers(read_metrics(straight), read_metrics(split))
    prompts = lambda d: [json.loads(l)["positions"] for l in (d / "prompts.jsonl").read_text().splitlines()]
    assert prompts(split) == prompts(straight) == [[4 * i + k for k in range(4)] for i in range(4)]


@pytest.mark.slow
def test_actors_and_a_learner_killed_mid_pipeline_give_the_same_numbers(straight, warm_roles, make_config, tmp_path):
    # During iteration 2 the reference scores batch 3's chunks as they are generated; during
    # iteration 3 rollout-0 generates batch 4 ahead (as v2) and the labeler scores it. Each is
    # SIGKILLed at that call, replaced (the rollout one loads v2) and its chunk redone.
    # Then learner-1 is SIGKILLed at iteration 4: the group is rebuilt from the checkpoint at
    # 2, which brings back batch 3 as generated ahead by v1, and iterations 3-4 are redone.
    faults = ("[{role: reference, iteration: 2}, {role: rollout, actor: 0, iteration: 3}, {role: labeler, iteration: 3},"
              " {role: learner, actor: 1, iteration: 4}]")
    train_run(make_config("run.iterations=4", *PIPELINED, f"chaos.faults={faults}"), tmp_path / "run", progress=False, warm=warm_roles)
    rows = read_metrics(tmp_path / "run")
    same_numbers(read_metrics(straight), rows)
    last = rows[-1]
    assert [last[f"recovery/{role}/restarts"] for role in ("reference", "rollout", "labeler", "learner")] == [1, 1, 1, 1]
    assert last["recovery/rollout/redone_prompts"] == 2  # one chunk of 2 prompts


@pytest.mark.slow
def test_ctrl_c_stops_a_pipelined_run_at_once(tiny_models, make_config, tmp_path):
    cfg = make_config("run.iterations=50", *PIPELINED, "rollout.num_actors=1", "learner.num_workers=1")
    config = tmp_path / "config.yaml"
    import yaml
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    run_dir = tmp_path / "run"
    out = (tmp_path / "driver.out").open("wb")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "rlaif-ray"), "train", "--config", str(config),
                             "--run-dir", str(run_dir), "--no-progress"], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 900
        while not ((run_dir / "metrics.jsonl").exists() and (run_dir / "metrics.jsonl").read_text().count("\n") >= 2):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "driver.out").read_text()[-2000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)  # mid-run: batches are in flight
        stopped = time.monotonic()
        proc.wait(timeout=STOP_WITHIN_S)
        print(f"stopped {time.monotonic() - stopped:.1f} s after Ctrl-C")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    text = (tmp_path / "driver.out").read_text()
    assert "Traceback" not in text and "interrupted" in text, text[-3000:]
    rows = read_metrics(run_dir)
    assert [r["iteration"] for r in rows] == list(range(1, len(rows) + 1))  # nothing half-written
