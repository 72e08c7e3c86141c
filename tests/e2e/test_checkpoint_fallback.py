"""A damaged checkpoint on a real run: `rlaif-ray train --resume` names the truncated
DeepSpeed file in one warning line, resumes from the previous checkpoint and finishes; with
no intact checkpoint it stops with one line and exit 2 before Ray starts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from rlaif_ray.checkpoint import list_checkpoints, verify_checkpoint
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
def test_truncated_pt_resumes_from_the_previous_checkpoint(checkpointed_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(checkpointed_run, run_dir)  # checkpoints at iterations 2 and 4 (tests/e2e/conftest.py)
    assert [p.name for p in list_checkpoints(run_dir)] == ["iter-000002", "iter-000004"]
    _truncate(run_dir / "checkpoints" / "iter-000004" / PT)
    done, _ = _resume(run_dir, "run.iterations=5")
    print(done.stderr[-4000:])
    assert done.returncode == 0, done.stderr[-4000:]
    warning = [l for l in done.stderr.splitlines() if "is damaged" in l]
    assert len(warning) == 1 and "iter-000004" in warning[0] and PT in warning[0] and "truncated" in warning[0]
    assert "resuming from iter-000002" in warning[0]
    assert "resumed from" in done.stderr and "iter-000002 at iteration 2" in done.stderr
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
