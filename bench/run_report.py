"""One training run measured from outside: its reward curve, per-stage seconds and peak memory.

    python -m bench.run_report --config configs/smollm2-cpu.yaml --run-dir runs/smollm2 [--set k=v ...]

Starts `rlaif-ray train` as a child process, samples the RSS/PSS of its whole process tree
(the private Ray and every actor) every 0.5 s (`bench.memory.sample_tree`), then prints,
from the run's metrics.jsonl: every reward source per iteration, the mean seconds of each
stage (iteration 1 left out: it pays for warm-up), the probe readings and the peak memory,
with the machine and its load average before and after. Used for the real-model evidence in
docs/real-models.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bench.common import load_average, machine_info
from bench.memory import sample_tree
from rlaif_ray.run_dir import read_metrics

STAGES = ("rollout", "score", "reward", "reference", "values", "advantages", "train", "sync", "probe", "iteration")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--run-dir", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args(argv)
    run_dir = Path(args.run_dir)
    cmd = [sys.executable, "-m", "rlaif_ray.cli", "train", "--config", args.config, "--run-dir", str(run_dir),
           "--overwrite", "--no-progress", *[f"--set={o}" for o in args.overrides]]
    before = load_average()
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    samples, rc, seconds = sample_tree(cmd, 0.5, log=run_dir.parent / f"{run_dir.name}.terminal.txt")
    after = load_average()
    if rc != 0:
        print(f"run failed (exit {rc}); see {run_dir.parent / f'{run_dir.name}.terminal.txt'}")
        return rc
    print(report(read_metrics(run_dir), samples, seconds, before, after, " ".join(cmd[2:])))
    return 0


def report(rows: list[dict], samples: list[dict], seconds: float, before, after, command: str) -> str:
    m = machine_info()
    sources = sorted({k.split("/")[1] for r in rows for k in r if k.startswith("reward/") and k.endswith("/mean")
                      and k.count("/") == 2})
    lines = [f"command: {command}",
             f"machine: {m['cpu']}, {m['nproc']} cores, {m['ram_gib']} GiB; "
             f"load average {before[0]:.2f} before, {after[0]:.2f} after; wall {seconds:.0f} s", "",
             "| iteration | reward (trained) | " + " | ".join(sources) + " | KL | length | probe |",
             "|---" * (5 + len(sources)) + "|"]
    for r in rows:
        cells = [f"{r.get(f'reward/{s}/mean', float('nan')):+.3f}" for s in sources]
        lines.append(f"| {r['iteration']} | {r['reward/mean']:+.3f} | " + " | ".join(cells) +
                     f" | {r['kl/mean']:.3f} | {r['response_length/mean']:.1f} | {r.get('sync/max_logprob_diff', float('nan')):.1e} |")
    steady = rows[1:] or rows
    timing = {s: float(np.mean([r[f"timing/{s}"] for r in steady if f"timing/{s}" in r] or [np.nan])) for s in STAGES}
    lines += ["", "mean seconds per stage (iterations 2..N): " +
              ", ".join(f"{s} {v:.2f}" for s, v in timing.items() if np.isfinite(v))]
    peak = max(samples, key=lambda s: s["rss"])
    gib = 2**30
    lines.append(f"peak memory of the process tree: Σ RSS {peak['rss'] / gib:.2f} GiB (upper bound), "
                 f"Σ PSS {max(s['pss'] for s in samples) / gib:.2f} GiB, {peak['n']} processes")
    probe = [r["sync/max_logprob_diff"] for r in rows if "sync/max_logprob_diff" in r]
    if probe:
        lines.append(f"probe sync/max_logprob_diff: min {min(probe):.1e}, max {max(probe):.1e}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
