"""Autoscaling on one machine with Ray's fake multi-node provider.

The head has 0 CPUs; every role asks for a custom role resource only worker node types
carry (cluster/local-autoscale.yaml). Starting the run makes the autoscaler launch worker
nodes, the run completes, and the nodes go away once idle.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_of(temp_dir: str) -> list[int]:
    """Processes whose command line mentions our private temp dir (ours only)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if temp_dir.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _stop(temp_dir: str) -> None:
    for sig in (15, 9):
        for pid in _pids_of(temp_dir):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        time.sleep(2)


def _alive_nodes(env: dict, address: str) -> int:
    code = ("import ray; ray.init(address=%r, log_to_driver=False); "
            "print(sum(n['Alive'] for n in ray.nodes()))" % address)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def autoscaling_cluster(tmp_path):
    temp_dir = tempfile.mkdtemp(prefix="rr-as-", dir="/tmp")  # short: socket paths < 107 chars
    port = _free_port()
    conf = yaml.safe_load((REPO / "cluster" / "local-autoscale.yaml").read_text())
    conf["provider"]["gcs_address"] = f"127.0.0.1:{port}"
    conf_path = tmp_path / "autoscale.yaml"
    conf_path.write_text(yaml.safe_dump(conf))
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           # Single-node Ray: keeps --node-ip-address 127.0.0.1, so nothing listens beyond loopback.
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    subprocess.run(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", f"--port={port}", "--num-cpus=0",
         f"--temp-dir={temp_dir}", f"--autoscaling-config={conf_path}", "--node-ip-address=127.0.0.1",
         "--include-dashboard=false", "--disable-usage-stats"],
        env=env, check=True, capture_output=True, timeout=180)
    try:
        yield env, f"127.0.0.1:{port}", temp_dir
    finally:
        _stop(temp_dir)


@pytest.mark.slow
def test_role_resources_launch_and_release_nodes(autoscaling_cluster, make_config, tmp_path):
    env, address, temp_dir = autoscaling_cluster
    assert _alive_nodes(env, address) == 1  # just the CPU-0 head
    cfg = make_config()  # resolves the tiny model and prompt paths
    args = ["--set", f"model.policy={cfg.model.policy}", "--set", f"model.labeler={cfg.model.labeler}",
            "--set", f"data.source={cfg.data.source}", "--set", f"ray.address={address}",
            "--set", "run.iterations=2", "--set", "data.prompts_per_iteration=4", "--set", "ppo.minibatch_size=16",
            "--set", "rollout.resources={num_cpus: 1, custom: {rollout: 1}}",
            "--set", "labeler.resources={num_cpus: 1, custom: {labeler: 1}}",
            "--set", "learner.resources={num_cpus: 1, custom: {learner: 1}}",
            "--set", "reference.resources={num_cpus: 1, custom: {learner: 1}}"]
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "rlaif_ray.cli", "train", "--config", str(REPO / "configs/local.yaml"),
                           "--run-dir", str(tmp_path / "run"), "--no-progress", *args],
                          env=env, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") == 2
    # The autoscaler's own log says which worker nodes it launched for the role resources.
    monitor = "".join(p.read_text(errors="replace") for p in Path(temp_dir).glob("session_*/logs/monitor*.log"))
    launched = {t for t in ("rollout_cpu", "labeler_cpu", "learner_cpu") if t in monitor}
    print(f"run took {time.time() - start:.0f} s; node types launched: {sorted(launched)}")
    assert launched == {"rollout_cpu", "labeler_cpu", "learner_cpu"}, monitor[-2000:]
    deadline = time.time() + 120
    while time.time() < deadline and _alive_nodes(env, address) > 1:
        time.sleep(3)
    assert _alive_nodes(env, address) == 1, "idle worker nodes were not removed"
