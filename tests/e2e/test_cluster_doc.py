"""docs/cluster.md's one-machine sequence, run exactly as printed against a fresh Ray head.

The block is read from the doc (the bash block after the `<!-- tested: ... -->` marker), so
doc and test cannot drift. It starts a head on Ray's default ports; so that it never meets
the other Ray clusters on this machine, it runs in a private network namespace
(`unshare -rn`: own loopback, same files and processes). Where that is not allowed it runs
directly if the default ports are free, else the test is skipped. The head's processes are
stopped by PID afterwards (found by the block's `$TMP`), never with `ray stop`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from head_processes import stop_head

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "cluster.md"
MARK = "<!-- tested: tests/e2e/test_cluster_doc.py"
# Ports `ray start --head` takes by default: GCS, dashboard, client server, dashboard agent.
DEFAULT_PORTS = (6379, 8265, 10001, 52365)

pytestmark = pytest.mark.slow


def documented_block() -> str:
    text = DOC.read_text()
    assert MARK in text, f"{DOC}: the tested block's marker {MARK!r} is gone"
    match = re.search(r"```bash\n(.*?)```", text[text.index(MARK):], re.S)
    assert match, f"{DOC}: no bash block after {MARK!r}"
    return match.group(1)


def test_documented_block_is_the_one_the_doc_describes():
    block = documented_block()
    for needle in ("ray start --head", "--temp-dir $TMP", "rlaif-ray submit", "ray job submit",
                   "RAY_AUTH_MODE=token", "configs/local.yaml", "run.iterations=2", "ray.env_vars"):
        assert needle in block, needle


def _isolation() -> list[str] | None:
    """A command prefix that runs in a private network namespace with loopback up, or None."""
    if not shutil.which("unshare") or not shutil.which("ip"):
        return None
    probe = subprocess.run(["unshare", "-rn", "ip", "link", "set", "lo", "up"], capture_output=True, timeout=30)
    return ["unshare", "-rn"] if probe.returncode == 0 else None


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_cluster_doc_sequence_runs_as_printed(tiny_models, tmp_path):
    if not (REPO / ".venv" / "bin" / "activate").is_file():
        pytest.skip("the documented sequence activates .venv (make env)")
    prefix = _isolation()
    if prefix is None and not all(_port_free(p) for p in DEFAULT_PORTS):
        pytest.skip(f"no network namespace here and Ray's default ports {DEFAULT_PORTS} are taken")
    tmp_file, jobs_file = tmp_path / "tmp-dir", tmp_path / "jobs.json"
    # Around the block, not in it: remember $TMP for the cleanup, and list the head's jobs
    # from inside the namespace once the block has run.
    script = (f"trap 'echo \"${{TMP:-}}\" > {tmp_file}' EXIT\nset -euo pipefail\n"
              + documented_block()
              + "python - > " + str(jobs_file) + " <<'EOF'\n"
                "import json\nfrom ray.job_submission import JobSubmissionClient\n"
                "jobs = JobSubmissionClient('http://127.0.0.1:8265').list_jobs()\n"
                "print(json.dumps([{'status': str(j.status.value), 'entrypoint': j.entrypoint, "
                "'message': j.message} for j in jobs]))\nEOF\n")
    (tmp_path / "block.sh").write_text(script)
    venv_bin = str(REPO / ".venv" / "bin")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "VIRTUAL_ENV"))}
    # Not this virtualenv on PATH: the block's own `activate` must be what makes `python` right.
    env["PATH"] = ":".join(p for p in env.get("PATH", "/usr/bin:/bin").split(":") if p != venv_bin)
    inner = f"ip link set lo up && exec bash {tmp_path / 'block.sh'}" if prefix else f"exec bash {tmp_path / 'block.sh'}"
    started = time.monotonic()
    try:
        out = subprocess.run([*(prefix or []), "bash", "-c", inner], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=1500)
    finally:
        temp_dir = tmp_file.read_text().strip() if tmp_file.is_file() else ""
        if temp_dir.startswith("/tmp/rr-"):
            stop_head(temp_dir)
    seconds = time.monotonic() - started
    assert out.returncode == 0, (out.stdout[-6000:], out.stderr[-6000:])
    assert "Failed to merge" not in out.stdout + out.stderr

    jobs = json.loads(jobs_file.read_text())
    assert len(jobs) == 2 and all(j["status"] == "SUCCEEDED" for j in jobs), jobs
    for name in ("submit", "cli"):
        metrics = Path(temp_dir) / "runs" / name / "metrics.jsonl"
        rows = [json.loads(ln) for ln in metrics.read_text().splitlines() if ln.strip()]
        assert [r["iteration"] for r in rows] == [1, 2], (name, rows)
    print(f"documented sequence: {seconds:.0f} s")
    shutil.rmtree(temp_dir, ignore_errors=True)
