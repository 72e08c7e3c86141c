"""`rlaif-ray bench [all|rollout|sync|trl|scaling|overhead|memory] [--quick]`.

Runs the benchmarks one at a time (never two at once: they would measure each other) and
writes `bench/results/<name>.json` and `<name>.md` for each, with the machine and its load
average before and after. `--quick` shrinks every benchmark to a seconds-to-a-minute smoke
run (tiny model, one repeat); its numbers mean nothing.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from bench.common import RESULTS_DIR, load_average, machine_info, write_result

# name -> module with `run(quick) -> Result`; "all" runs them in this order.
BENCHMARKS = {"rollout": "bench.rollout", "sync": "bench.sync", "trl": "bench.vs_trl",
              "scaling": "bench.scaling", "overhead": "bench.overhead", "memory": "bench.memory"}


def run_benchmarks(names: list[str], quick: bool, out_dir: Path = RESULTS_DIR) -> list[Path]:
    machine = machine_info()
    written = []
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        before, start = load_average(), time.perf_counter()
        print(f"bench {name}{' (quick)' if quick else ''}: load average {before[0]:.1f}", flush=True)
        result = module.run(quick)
        seconds = time.perf_counter() - start
        json_path, md_path = write_result(result, out_dir, machine, before, load_average(), seconds)
        print(md_path.read_text(), flush=True)
        print(f"bench {name}: {seconds:.0f} s; wrote {json_path} and {md_path}", flush=True)
        written.append(json_path)
    return written


def expand(name: str) -> list[str]:
    return list(BENCHMARKS) if name == "all" else [name]
