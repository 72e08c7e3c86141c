"""`rlaif-ray submit` / `job` against a real, private Ray head with token auth.

The head runs on loopback only, with its own temp dir and free ports, so it never meets the
other Ray clusters on this machine; it is stopped by PID (its processes are found by that
temp dir), never with `ray stop`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from head_processes import processes_of, stop_head
import requests

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
RLAIF = [sys.executable, "-m", "rlaif_ray.cli"]

pytestmark = pytest.mark.slow


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_for(condition, timeout_s: float, what: str, every_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def ray_head():
    """A private token-auth Ray head: {address, temp_dir, token_file, client_env}."""
    # Short path: Ray's Unix socket paths must stay under 107 characters.
    temp_dir = tempfile.mkdtemp(prefix="rr-", dir="/tmp")
    token_file = Path(temp_dir) / "auth_token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    gcs, dash, client, nm, om, agent, agent_grpc, rt_env, metrics = free_ports(9)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    # Token auth as Ray 2.60 starts it: RAY_AUTH_MODE=token, the token from RAY_AUTH_TOKEN_PATH.
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: a single-node Ray, so `--node-ip-address 127.0.0.1`
    # is kept (otherwise Ray swaps it for the host's address) and the GCS, raylet and workers
    # listen on loopback only. PATH: the job's `python` must be this virtualenv's.
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               PATH=f"{VENV_BIN}:{env.get('PATH', '')}")
    cmd = [str(VENV_BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
           "--port", str(gcs), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
           "--include-dashboard", "true", "--ray-client-server-port", str(client),
           "--node-manager-port", str(nm), "--object-manager-port", str(om),
           "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
           "--runtime-env-agent-port", str(rt_env), "--metrics-export-port", str(metrics),
           "--min-worker-port", "0", "--max-worker-port", "0",
           "--num-cpus", "8", "--object-store-memory", str(512 * 2**20),
           "--temp-dir", temp_dir, "--disable-usage-stats"]
    log = open(Path(temp_dir) / "ray-start.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=temp_dir)
    address = f"http://127.0.0.1:{dash}"

    def dashboard_up():
        assert proc.poll() is None, (Path(temp_dir) / "ray-start.log").read_text()[-3000:]
        try:
            return requests.get(f"{address}/api/version", timeout=2).status_code in (200, 401)
        except requests.ConnectionError:
            return False

    try:
        wait_for(dashboard_up, 120, "the Ray dashboard to answer")
        client_env = {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}  # the CLI sets the mode itself
        yield {"address": address, "temp_dir": temp_dir, "token_file": token_file, "client_env": client_env}
    finally:
        proc.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        stop_head(temp_dir)  # stragglers: job drivers, workers (ours only)
        shutil.rmtree(temp_dir, ignore_errors=True)


def rlaif(args: list[str], env: dict, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*RLAIF, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)


def submit_sleep_job(head, seconds: int) -> str:
    """A long trivial job, submitted with the token straight through Ray's SDK (in a subprocess:
    RAY_AUTH_MODE must not leak into this test process)."""
    code = ("from ray.job_submission import JobSubmissionClient as C, JobStatus as S; import sys, time\n"
            f"c = C({head['address']!r}); j = c.submit_job(entrypoint='sleep {seconds}')\n"
            "t = time.monotonic()\n"
            "while c.get_job_status(j) != S.RUNNING and time.monotonic() - t < 60: time.sleep(0.5)\n"
            "print(j)")
    env = {**head["client_env"], "RAY_AUTH_MODE": "token"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def assert_clean_failure(out: subprocess.CompletedProcess, *words: str) -> str:
    assert out.returncode == 2, (out.returncode, out.stdout[-1000:], out.stderr[-3000:])
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    line = [ln for ln in out.stderr.splitlines() if ln.startswith("rlaif-ray:")][-1]
    for w in words:
        assert w in line, line
    return line


def test_head_listens_on_loopback_only(ray_head):
    import psutil

    listening = []
    for pid in processes_of(ray_head["temp_dir"]):
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        listening += [(pid, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    assert listening, "found no listening sockets of the head"
    assert all(ip in ("127.0.0.1", "::1", "::ffff:127.0.0.1") for _, ip, _ in listening), listening


def test_missing_wrong_token_and_bad_address_fail_clearly(ray_head, tiny_models, tmp_path):
    # tiny_models: configs/local.yaml's files must exist, or submit refuses before contacting the head.
    home = tmp_path / "home"  # no ~/.ray/auth_token here
    home.mkdir()
    no_token = {k: v for k, v in ray_head["client_env"].items() if k != "RAY_AUTH_TOKEN_PATH"}
    no_token["HOME"] = str(home)
    submit = ["submit", "--address", ray_head["address"], "--config", "configs/local.yaml", "--no-wait"]
    assert_clean_failure(rlaif(submit, no_token), "no Ray auth token")
    assert_clean_failure(rlaif(["job", "status", "raysubmit_x", "--address", ray_head["address"]], no_token),
                         "no Ray auth token")
    # Token mode off on the client: the request goes out without a token and the head says 401.
    assert_clean_failure(rlaif(submit, {**no_token, "RAY_AUTH_MODE": "disabled"}), "401", "RAY_AUTH_MODE")

    wrong = tmp_path / "wrong_token"
    wrong.write_text(secrets.token_hex(32))
    assert_clean_failure(rlaif(submit, {**no_token, "RAY_AUTH_TOKEN_PATH": str(wrong)}), "refused the token")
    assert_clean_failure(rlaif(submit, {**no_token, "RAY_AUTH_TOKEN_PATH": str(tmp_path / "none")}),
                         "RAY_AUTH_TOKEN_PATH")

    (port,) = free_ports(1)
    bad = ["submit", "--address", f"127.0.0.1:{port}", "--config", "configs/local.yaml", "--no-wait"]
    assert_clean_failure(rlaif(bad, ray_head["client_env"]), "cannot reach")


def test_submit_with_an_interpreter_lacking_the_project_fails_in_one_line(ray_head, tiny_models, tmp_path):
    """`--python` names the job's interpreter; one without the project fails at once, saying so.
    (A successful run, both through `rlaif-ray submit` and `ray job submit`, is
    tests/e2e/test_cluster_doc.py: the documented sequence.)"""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    prompts = tmp_path / "prompts.jsonl"  # absolute, outside the repo: warned about, not uploaded
    prompts.write_text('{"prompt": "hi"}\n')
    args = ["submit", "--address", ray_head["address"], "--config", "configs/local.yaml",
            "--python", str(bare / "bin" / "python"), "--set", f"data.source={prompts}",
            "--set", "run.iterations=1"]
    out = rlaif(args, ray_head["client_env"], timeout_s=300)
    assert out.returncode == 1, (out.stdout[-3000:], out.stderr[-3000:])
    assert f"warning: data.source: {prompts} is an absolute path, not uploaded" in out.stderr
    job_id = out.stdout.splitlines()[0].strip()
    assert job_id.startswith("raysubmit_"), out.stdout[:500]
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("rlaif-ray job:")]
    assert len(lines) == 1 and f"this interpreter ({bare}/bin/python) lacks ray[default], torch" in lines[0], \
        out.stdout[-3000:]
    assert "Traceback" not in out.stdout
    assert f"job {job_id} FAILED" in out.stderr

    status = rlaif(["job", "status", job_id, "--address", ray_head["address"]], ray_head["client_env"])
    assert status.returncode == 0 and status.stdout.startswith("FAILED"), status


def test_job_stop_ends_a_long_job(ray_head):
    job_id = submit_sleep_job(ray_head, 600)
    env, addr = ray_head["client_env"], ray_head["address"]
    st = rlaif(["job", "status", job_id, "--address", addr], env)
    assert st.returncode == 0 and st.stdout.startswith("RUNNING"), st
    stop = rlaif(["job", "stop", job_id, "--address", addr], env)
    assert stop.returncode == 0 and stop.stdout.strip() == "STOPPED", stop
    st = rlaif(["job", "status", job_id, "--address", addr], env)
    assert st.stdout.startswith("STOPPED"), st
    logs = rlaif(["job", "logs", job_id, "--address", addr], env)
    assert logs.returncode == 0, logs
    unknown = rlaif(["job", "status", "raysubmit_doesnotexist", "--address", addr], env)
    assert_clean_failure(unknown, "raysubmit_doesnotexist")
