"""Actors killed from outside, by PID, at random moments (inside a call or between calls):
every iteration still completes with all its samples, and each kill is counted once.

The killer plays the part of the OOM killer or a lost node: it finds the actor processes of
this test session's Ray (children of its raylet, named `ray::<ActorClass>...` by Ray) and
SIGKILLs one after the driver has written a given iteration, after a random delay.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest

from rlaif_ray.driver.run import train_run
from rlaif_ray.run_dir import read_metrics

# (after this many rows of metrics.jsonl, kill an actor of this class); each role is then
# called again by a later iteration, so every kill must show as one replacement.
KILLS = [(1, "RolloutActor"), (2, "LabelerActor"), (3, "ReferenceActor")]
ITERATIONS = 6
ROLE = {"RolloutActor": "rollout", "LabelerActor": "labeler", "ReferenceActor": "reference"}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def actor_pids(temp_dir: str, cls: str) -> list[int]:
    """PIDs of `cls` actors of the Ray whose raylet runs with `temp_dir` (not another Ray on this machine)."""
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    raylets = {p for p in pids if "raylet" in _cmdline(p) and temp_dir in _cmdline(p)}
    return [p for p in pids if _ppid(p) in raylets and _cmdline(p).startswith(f"ray::{cls}")]


def killer(run_dir: Path, temp_dir: str, seed: int, done: list, stop: threading.Event) -> None:
    rng = random.Random(seed)
    for after_rows, cls in KILLS:
        while len(read_metrics(run_dir)) < after_rows:
            if stop.wait(0.05):
                return
        time.sleep(rng.uniform(0.0, 1.5))  # anywhere in the next iteration, in a call or not
        pids = actor_pids(temp_dir, cls)
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            done.append((after_rows, cls, len(read_metrics(run_dir))))


@pytest.mark.slow
def test_actors_killed_by_pid_at_random_moments(ray_local, make_config, tmp_path):
    run_dir = tmp_path / "run"
    # Two reference scorers: the reference is a pool like the others (each takes half the shards).
    cfg = make_config(f"run.iterations={ITERATIONS}", "run.call_timeout_s=120", "reference.num_actors=2")
    done, stop = [], threading.Event()
    thread = threading.Thread(target=killer, args=(run_dir, ray_local, int(time.time()), done, stop), daemon=True)
    thread.start()
    try:
        train_run(cfg, run_dir, progress=False)
    finally:
        stop.set()
        thread.join(timeout=10)
    print("kills (after row, class, rows when killed):", done)
    assert [cls for _, cls, _ in done] == [cls for _, cls in KILLS]
    rows = read_metrics(run_dir)
    assert [r["iteration"] for r in rows] == list(range(1, ITERATIONS + 1))
    assert all(r["data/samples"] == 64 for r in rows)   # 16 prompts × 4 samples, nothing lost
    last = rows[-1]
    for cls in ROLE.values():
        assert last[f"recovery/{cls}/restarts"] == 1, (cls, last)
    assert last["recovery/actor_restarts"] == len(KILLS)
    # Where the time went, per role, in every row (a kill costs a fresh engine: seconds, not minutes).
    for role in ("rollout", "labeler", "reference", "learner"):
        assert all(0.0 < r[f"utilization/{role}"] <= 1.05 for r in rows), role
    assert all(0.0 < r["utilization/driver_waiting"] <= 1.0 for r in rows)
    # A replaced rollout engine is probed against the learner before the run goes on.
    assert all(r["sync/max_logprob_diff"] <= 1e-4 for r in rows if "sync/max_logprob_diff" in r)
