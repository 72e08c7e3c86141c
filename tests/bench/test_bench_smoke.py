"""Benchmarks are not tests; this only checks that `rlaif-ray bench` runs end to end and
writes its result files. The cheapest benchmark, `memory --quick`, samples the process tree
of a seconds-long CLI command (no Ray, no engines): a few seconds even on a loaded machine."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_memory_quick_writes_json(tmp_path, repo_root):
    proc = subprocess.run([sys.executable, "-m", "rlaif_ray.cli", "bench", "memory", "--quick", "--out", str(tmp_path)],
                          cwd=repo_root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((tmp_path / "memory.json").read_text())
    assert doc["name"] == "memory" and doc["status"] == "ok" and doc["quick"] is True
    assert doc["machine"]["nproc"] >= 1 and len(doc["load_before"]) == 3 and len(doc["load_after"]) == 3
    assert doc["settings"]["samples"] >= 1
    peak = doc["summary"]["peak RSS GiB"]
    assert 0 < peak < 8, peak  # a CLI process: tens of MiB
    md = (tmp_path / "memory.md").read_text()
    assert md.startswith("### memory (quick)") and "| measure | GiB | count |" in md


def test_bench_rejects_unknown_benchmark(repo_root):
    proc = subprocess.run([sys.executable, "-m", "rlaif_ray.cli", "bench", "nope"], cwd=repo_root,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no benchmark 'nope'" in proc.stderr and "rollout" in proc.stderr
