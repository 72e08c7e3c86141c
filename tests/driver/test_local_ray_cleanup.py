"""No orphans, no litter: the private local Ray of a `rlaif-ray train` driver, run as a person
runs it (the CLI as a subprocess, real actors on the tiny models).

A driver killed by SIGKILL leaves no process of its Ray behind within seconds, its temp dir
is gone and Ray's session logs are kept under the run dir; a normal run leaves nothing at all
(that run is a `--verbose` one, which also shows the engines' output on the terminal);
and while it runs, Ray's processes listen on loopback only.

Which processes belong to a run is found independently of the watchdog's own matching: any
process whose command line or open file descriptors mention the run's temp dir.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from rlaif_ray.driver.runtime import SHORT_TMP, TEMP_PREFIX
from toy.task import write_toy_prompts_jsonl

REPO = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "rlaif-ray"
GONE_WITHIN_S = 10.0     # what "no orphans" means: everything of the killed run gone this fast
START_TIMEOUT_S = 900.0  # actors up and a first iteration done, on 2 busy cores
POLL_S = 0.2
# Small and cheap: one rollout engine, the reference and one learner (the toy rule as the
# reward: no labeler engine to start, ~8 s less on 2 cores; what is tested is the driver's
# Ray, whatever actors it runs), 4 prompts × 4 samples per iteration.
SMALL = ["rollout.num_actors=1", "learner.num_workers=1", "data.prompts_per_iteration=4", "ppo.minibatch_size=16",
         'reward.sources=[{kind: function, function: "toy.task:rule_score"}]']


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory) -> Path:
    return write_toy_prompts_jsonl(tmp_path_factory.mktemp("data") / "prompts.jsonl", 64, seed=0)


def start_train(tiny_models, prompts_file: Path, run_dir: Path, iterations: int, *flags: str) -> subprocess.Popen:
    sets = [f"model.policy={tiny_models['policy']}", f"model.labeler={tiny_models['labeler']}",
            f"data.source={prompts_file}", f"run.iterations={iterations}", *SMALL]
    args = [str(CLI), "train", *flags, "--config", str(REPO / "configs/local.yaml"), "--run-dir", str(run_dir)]
    for s in sets:
        args += ["--set", s]
    out = (run_dir.parent / f"{run_dir.name}.out").open("wb")
    return subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def wait_for(condition, proc: subprocess.Popen, what: str, timeout_s: float = START_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        assert proc.poll() is None, f"the driver exited ({proc.returncode}) before {what}"
        time.sleep(POLL_S)
    raise AssertionError(f"no {what} within {timeout_s} s")


def private_temp_dir(driver_pid: int) -> Path | None:
    """The driver's private temp dir: the one holding a Ray session named after its pid."""
    sessions = list(Path(SHORT_TMP).glob(f"{TEMP_PREFIX}*/session_*_{driver_pid}"))
    return sessions[0].parent if sessions else None


def first_metrics_row(run_dir: Path) -> dict | None:
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return json.loads(lines[0]) if lines else None


def referencing_pids(temp_dir: Path) -> set[int]:
    """Every process whose command line or open file descriptors mention `temp_dir`."""
    root, me = str(temp_dir), os.getpid()
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        try:
            mentions = root in (proc / "cmdline").read_bytes().decode(errors="replace")
            mentions = mentions or any(os.readlink(fd).startswith(root) for fd in (proc / "fd").iterdir())
        except OSError:  # gone meanwhile
            continue
        if mentions:
            pids.add(int(proc.name))
    return pids


def is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


def outward_listeners(pids: set[int]) -> list[str]:
    """'pid name address:port' for every listening socket of `pids` not bound to loopback."""
    found = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            conns = proc.net_connections("inet")
            name = " ".join(proc.cmdline())[:80]
        except psutil.Error:
            continue
        found += [f"{pid} {name} {c.laddr.ip}:{c.laddr.port}" for c in conns
                  if c.status == psutil.CONN_LISTEN and not is_loopback(c.laddr.ip)]
    return found


def gone(temp_dir: Path) -> bool:
    return not temp_dir.exists() and not referencing_pids(temp_dir)


@pytest.mark.slow
def test_killed_driver_leaves_no_orphans_and_keeps_ray_logs(tiny_models, prompts_file, tmp_path):
    run_dir = tmp_path / "run"
    proc = start_train(tiny_models, prompts_file, run_dir, iterations=50)
    try:
        temp_dir = wait_for(lambda: private_temp_dir(proc.pid), proc, "private temp dir")
        wait_for(lambda: first_metrics_row(run_dir), proc, "first iteration")
        cluster = referencing_pids(temp_dir) | {proc.pid}
        listening = outward_listeners(cluster)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = time.monotonic()
        while not gone(temp_dir) and time.monotonic() - killed_at < GONE_WITHIN_S:
            time.sleep(POLL_S)
        left = referencing_pids(temp_dir)
        print(f"cleaned up in {time.monotonic() - killed_at:.1f} s; {len(cluster)} processes")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(cluster) > 5, cluster  # GCS, raylet, agents, actors: the scan did find the cluster
    assert not left, [" ".join(psutil.Process(p).cmdline())[:120] for p in left if psutil.pid_exists(p)]
    assert not temp_dir.exists()
    kept = list((run_dir / "logs" / "ray").glob(f"session_*_{proc.pid}"))
    assert len(kept) == 1 and (kept[0] / "raylet.out").exists() and (kept[0] / "gcs_server.out").exists(), kept
    print("outward listeners:", listening)
    assert not listening, listening  # the learners' rendezvous too (actors/process_group.py)


@pytest.mark.slow
def test_normal_verbose_run_streams_everything_and_leaves_nothing_behind(tiny_models, prompts_file, tmp_path):
    """One run for two promises: `--verbose` streams what the engines and Ray print to the
    terminal instead of logs/ (tests/e2e/test_quiet_terminal.py has the quiet default), and
    a run that ends normally leaves no process, temp dir or kept Ray log behind."""
    run_dir = tmp_path / "run"
    proc = start_train(tiny_models, prompts_file, run_dir, 1, "--verbose")
    try:
        temp_dir = wait_for(lambda: private_temp_dir(proc.pid), proc, "private temp dir")
        assert proc.wait(START_TIMEOUT_S) == 0, (run_dir.parent / "run.out").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not temp_dir.exists()
    assert not referencing_pids(temp_dir)
    out = (run_dir.parent / "run.out").read_text(errors="replace")
    assert "Initializing a V1 LLM engine" in out and "Started a local Ray instance" in out, out[-3000:]
    assert "starting rollout ×1, reference ×1, learner ×1" in out and "done: 1 iterations" in out, out[-3000:]
    assert not (run_dir / "logs").exists()  # nothing redirected, and no Ray logs kept (kept only when a run failed)
