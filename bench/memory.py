"""Peak memory of the embedded default run (`rlaif-ray train --config configs/local.yaml`).

The run is started as a child process; every 0.5 s the sampler sums the RSS of the child
and all its descendants (the local Ray it starts: GCS, raylet, agents and every actor's
worker process). RSS counts shared pages (torch and vLLM libraries, the object store's
shared memory) once per process that maps them, so the sum is an upper bound of the real
footprint; the sum of PSS (shared pages split between their users, from
/proc/<pid>/smaps_rollup) is sampled alongside as the fair estimate.

`--quick` samples a seconds-long CLI command (`config validate`) instead of a training
run: it checks the sampler and the result file, its numbers mean nothing.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import LOCAL_YAML, REPO_ROOT, Result
from bench.workloads import prompts_file, tiny_models

GOAL_GIB = 8.0
INTERVAL_S = 0.5


def run(quick: bool) -> Result:
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        if quick:
            cmd = [sys.executable, "-m", "rlaif_ray.cli", "config", "validate", str(LOCAL_YAML)]
        else:
            cmd = [sys.executable, "-m", "rlaif_ray.cli", "train", "--config", str(LOCAL_YAML),
                   "--run-dir", str(Path(tmp) / "run"), "--no-progress", *_model_overrides()]
        samples, rc, seconds = sample_tree(cmd, INTERVAL_S, log=Path(tmp) / "log.txt")
        log_tail = (Path(tmp) / "log.txt").read_text()[-2000:]
    if rc != 0:
        raise RuntimeError(f"bench memory: {' '.join(cmd[2:5])} exited with {rc}:\n{log_tail}")
    peak = max(samples, key=lambda s: s["rss"])
    peak_pss = max(s["pss"] for s in samples)
    gib = 2**30
    rows = [{"what": "peak Σ RSS over the process tree (upper bound)", "gib": peak["rss"] / gib},
            {"what": "peak Σ PSS (shared pages split)", "gib": peak_pss / gib},
            {"what": "processes in the tree at the RSS peak", "gib": None, "count": peak["n"]}]
    top = sorted(peak["by_name"].items(), key=lambda kv: -kv[1])[:8]
    notes = ["RSS counts shared pages once per process that maps them, so Σ RSS over-counts; "
             "Σ PSS is the fair share."]
    return Result("memory", quick, {"command": " ".join(["rlaif-ray", *cmd[3:]]), "interval_s": INTERVAL_S,
                                    "samples": len(samples), "run_seconds": round(seconds, 1)},
                  rows, [("what", "measure"), ("gib", "GiB"), ("count", "count")],
                  summary={"peak RSS GiB": peak["rss"] / gib, "goal": f"≤ {GOAL_GIB:g} GiB",
                           "goal met": bool(peak["rss"] / gib <= GOAL_GIB),
                           "largest at the peak (GiB)": ", ".join(f"{k} {v / gib:.2f}" for k, v in top)},
                  notes=notes, extra={"timeline": _thin(samples, 200)})


def _model_overrides() -> list[str]:
    """The default config names the tiny models relative to the repo; point at the built ones
    (and at the toy prompts file if the default one is not there)."""
    tm = tiny_models()
    out = ["--set", f"model.policy={tm['policy']}", "--set", f"model.labeler={tm['labeler']}"]
    if not (REPO_ROOT / ".cache" / "tiny-models" / "prompts-train.jsonl").exists():
        out += ["--set", f"data.source={prompts_file()}"]
    return out


def sample_tree(cmd: list[str], interval_s: float, log: Path) -> tuple[list[dict], int, float]:
    """Run `cmd` (cwd: the repo) and sample its process tree until it exits."""
    import psutil

    start = time.perf_counter()
    with open(log, "w") as out:
        child = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
        root = psutil.Process(child.pid)
        samples = []
        while True:
            samples.append(_sample(root, time.perf_counter() - start))
            try:
                child.wait(timeout=interval_s)
                break
            except subprocess.TimeoutExpired:
                continue
    return [s for s in samples if s["n"]], child.returncode, time.perf_counter() - start


def _sample(root, t: float) -> dict:
    import psutil

    rss = pss = n = 0
    by_name: dict[str, int] = {}
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        procs = []
    for p in procs:
        try:
            r = p.memory_info().rss
            name = _short_name(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += r
        pss += _pss(p.pid, r)
        n += 1
        by_name[name] = by_name.get(name, 0) + r
    return {"t": round(t, 2), "rss": rss, "pss": pss, "n": n, "by_name": by_name}


def _short_name(p) -> str:
    """Ray renames actor processes `ray::ClassName`; others by executable name."""
    name = p.name()
    cmd = p.cmdline()
    if cmd and cmd[0].startswith("ray::"):
        return cmd[0].split(".")[0]
    return name


def _pss(pid: int, fallback: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return fallback


def _thin(samples: list[dict], keep: int) -> list[dict]:
    step = max(1, len(samples) // keep)
    return [{k: s[k] for k in ("t", "rss", "pss", "n")} for s in samples[::step]]
