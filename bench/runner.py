"""`rlaif-ray bench [all|rollout|sync|trl|scaling|overhead|memory|pipeline|layouts] [--quick]`.

Runs the benchmarks one at a time (never two at once: they would measure each other) and
writes `bench/results/<name>.json` and `<name>.md` for each, with the machine, its load
average before and after, and the CPU other processes used meanwhile (`OthersWatch`). `--quick` shrinks every benchmark to a seconds-to-a-minute smoke
run (tiny model, one repeat); its numbers mean nothing. A result taken while the machine was
not quiet (`bench.common.judge_quiet`) is flagged in its files; `--strict` writes none of those
(a benchmark that starts on a loaded machine is not even run) and exits non-zero.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

from bench.common import RESULTS_DIR, OthersWatch, judge_quiet, load_average, machine_info, write_result

# name -> module with `run(quick) -> Result`; "all" runs them in this order.
BENCHMARKS = {"rollout": "bench.rollout", "sync": "bench.sync", "trl": "bench.vs_trl",
              "scaling": "bench.scaling", "overhead": "bench.overhead", "memory": "bench.memory",
              "pipeline": "bench.pipeline", "layouts": "bench.layouts"}


def run_benchmarks(names: list[str], quick: bool, out_dir: Path = RESULTS_DIR,
                   strict: bool = False) -> tuple[list[Path], list[str]]:
    """Run `names` one after another; returns (JSON files written, benchmarks refused under `strict`)."""
    machine = machine_info()
    print(f"bench: {machine['nproc']} × {machine['cpu']}, {machine['ram_gib']} GiB", flush=True)
    written, refused = [], []
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        before, start = load_average(), time.perf_counter()
        print(f"bench {name}{' (quick)' if quick else ''}: load average {before[0]:.1f}", flush=True)
        if strict and not judge_quiet(before, before).quiet:  # no point running: it would be refused
            refused.append(name)
            print(f"bench {name}: refused (--strict): {judge_quiet(before, before).reason}", file=sys.stderr, flush=True)
            continue
        with OthersWatch() as others:
            result = module.run(quick)
        seconds = time.perf_counter() - start
        after = load_average()
        quiet = judge_quiet(before, after, others_cores=others.cores)
        if strict and result.status == "ok" and not quiet.quiet:
            refused.append(name)
            print(f"bench {name}: not written (--strict): {quiet.reason}", file=sys.stderr, flush=True)
            continue
        json_path, md_path = write_result(result, out_dir, machine, before, after, seconds, others.cores)
        print(md_path.read_text(), flush=True)
        print(f"bench {name}: {seconds:.0f} s; wrote {json_path} and {md_path}", flush=True)
        written.append(json_path)
    return written, refused


def expand(name: str) -> list[str]:
    return list(BENCHMARKS) if name == "all" else [name]
