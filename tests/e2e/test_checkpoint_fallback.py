"""A damaged checkpoint on a real run: a resume names the truncated DeepSpeed file in one
warning line, resumes from the previous checkpoint and finishes; with no intact checkpoint
`rlaif-ray train --resume` stops with one line and exit 2 before Ray starts.

The resume that finishes runs in this process on the session's kept roles (the CLI's
`--resume` path is the same `train_run`, and its start-up is what the second test covers):
a fresh CLI driver would start every role anew for the same check, ~60 s on 2 cores."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time

import pytest

from shared_runs import CHECKPOINTED

from rlaif_ray.checkpoint import list_checkpoints, verify_checkpoint
from rlaif_ray.driver.run import train_run
from rlaif_ray.run_dir import read_metrics

PT = "learner/policy/mp_rank_00_model_states.pt"


def _truncate(path):
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size // 2)


def _resume(run_dir, *overrides):
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "rlaif_ray.cli", "train", "--resume", str(run_dir), "--no-progress"]
    for o in overrides:
        cmd += ["--set", o]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    return done, time.perf_counter() - start


@pytest.mark.slow
def test_truncated_pt_resumes_from_the_previous_checkpoint(checkpointed_run, warm_roles, make_config, tmp_path, caplog):
    run_dir = tmp_path / "run"
    shutil.copytree(checkpointed_run, run_dir)  # checkpoints at iterations 2 and 4 (tests/e2e/conftest.py)
    assert [p.name for p in list_checkpoints(run_dir)] == ["iter-000002", "iter-000004"]
    _truncate(run_dir / "checkpoints" / "iter-000004" / PT)
    with caplog.at_level(logging.WARNING, logger="rlaif_ray"):
        train_run(make_config("run.iterations=5", *CHECKPOINTED), run_dir, resume=True, progress=False, warm=warm_roles)
    warning = [m for m in caplog.messages if "is damaged" in m]
    assert len(warning) == 1 and "iter-000004" in warning[0] and PT in warning[0] and "truncated" in warning[0]
    assert "resuming from iter-000002" in warning[0]
    assert any("resumed from" in m and "iter-000002 at iteration 2" in m for m in caplog.messages), caplog.messages
    assert [r["iteration"] for r in read_metrics(run_dir)] == [1, 2, 3, 4, 5]
    discarded = (run_dir / "metrics.discarded.jsonl").read_text().splitlines()
    assert [json.loads(l)["iteration"] for l in discarded] == [3, 4]
    # The damaged checkpoint was replaced by the redone iteration's; keep_checkpoints (2) holds.
    assert [p.name for p in list_checkpoints(run_dir)] == ["iter-000004", "iter-000005"]
    assert all(verify_checkpoint(p) == [] for p in list_checkpoints(run_dir))


@pytest.mark.slow
def test_no_intact_checkpoint_fails_fast_with_exit_2(checkpointed_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(checkpointed_run, run_dir)
    _truncate(run_dir / "checkpoints" / "iter-000004" / PT)
    (run_dir / "checkpoints" / "iter-000002" / "state.json").write_text("{\"iteration\": ")
    done, seconds = _resume(run_dir, "run.iterations=5")
    print(f"{seconds:.1f} s", done.stderr)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlaif-ray: ") and "no intact checkpoint" in lines[0]
    assert f"iter-000004: {PT}" in lines[0] and "iter-000002: state.json" in lines[0]
    # Before Ray and the actors (whose start-up alone takes 40-80 s on this machine): the
    # imports, the tokenizer and the prompts only.
    assert "starting" not in done.stderr and seconds < 40, seconds
    assert [r["iteration"] for r in read_metrics(run_dir)] == [1, 2, 3, 4]  # nothing was changed
