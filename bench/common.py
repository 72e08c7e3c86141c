"""Shared pieces of the benchmarks: machine facts, how figures are taken, result files (the
models and configs they run on: bench/workloads.py).

Every benchmark returns a `Result`; `write_result` turns it into `bench/results/<name>.json`
(everything, machine and load included) and `bench/results/<name>.md` (one small table).

How figures are taken (docs/performance.md, "How figures are taken"):
- the load average is read before and after every benchmark and the CPU time of every other
  process is watched meanwhile (`OthersWatch`); `judge_quiet` marks a result "not quiet" in
  its .md and .json when it started above QUIET_LOAD_START or other processes used more than
  QUIET_OTHERS_CORES (without that watch: the load moved by more than QUIET_LOAD_MOVE), and
  `rlaif-ray bench --strict` refuses to write it;
- two contenders alternate round by round (A B A B …, `Rounds`), so a change of load hits
  both, and each is reported as median and spread (min–max) with the ratio of the medians;
- the machine (cores × CPU model, RAM) heads every result.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
BENCH_CACHE = REPO_ROOT / ".cache" / "bench"
LOCAL_YAML = REPO_ROOT / "configs" / "local.yaml"


# --------------------------------------------------------------------------- machine


def machine_info() -> dict:
    """nproc, CPU model, RAM and OS: what a reader needs to judge absolute numbers."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gib": round(ram / 2**30, 1),
            "os": platform.platform(), "python": platform.python_version()}


def load_average() -> list[float]:
    """1-, 5- and 15-minute load averages (processes wanting a core)."""
    return [round(x, 2) for x in os.getloadavg()]


# Why these bounds: issue 13 found the same benchmark giving 0.79× at load 9–10 and 2.03× at
# load 0.8, so a figure is only trusted from a machine nobody else was using. On 2 cores a
# 1-minute load above 1 means another process held about half the machine at the start; a move
# of more than 0.5 means work came or went during the run. The benchmark's own processes also
# raise the load (up to the cores they keep busy), so a long, CPU-bound benchmark can be
# flagged with nobody else on the machine: the flag means "not shown quiet", not "disturbed".
QUIET_LOAD_START = 1.0
QUIET_LOAD_MOVE = 0.5
# Where the benchmark's own CPU use can be told apart (`OthersWatch`), "work came or went" is
# judged on the other processes instead of the load: on average they may hold at most this
# many cores (a quarter of one: ~12 % of a 2-core machine, well inside the spread of rounds).
QUIET_OTHERS_CORES = 0.25


@dataclass(frozen=True)
class Quietness:
    quiet: bool
    reason: str  # why not quiet, one line; "" when quiet


def judge_quiet(load_before: list[float], load_after: list[float], start_max: float = QUIET_LOAD_START,
                move_max: float = QUIET_LOAD_MOVE, others_cores: float | None = None) -> Quietness:
    """Was the machine quiet? Judged on the 1-minute load average at the start, then either on
    what other processes used meanwhile (`others_cores`, from `OthersWatch`) or, where that
    was not watched, on how far the load average moved."""
    before, after = load_before[0], load_after[0]
    why = []
    if before > start_max:
        why.append(f"load {before:.2f} at the start (> {start_max:g})")
    if others_cores is not None:
        if others_cores > QUIET_OTHERS_CORES:
            why.append(f"other processes used {others_cores:.2f} cores on average (> {QUIET_OTHERS_CORES:g})")
    elif abs(after - before) > move_max:
        why.append(f"load moved {before:.2f} → {after:.2f} (by more than {move_max:g})")
    return Quietness(not why, "; ".join(why))


class OthersWatch:
    """CPU time used by processes outside this one's tree while a benchmark runs.

    The load average cannot tell a benchmark's own processes (Ray, its actors, engines) from
    someone else's: a CPU-bound benchmark on 2 cores raises it to ~2 by itself. Every
    `interval_s` this samples every process's CPU time; at the end, what processes that are
    not descendants of this one used, over the wall time, is the other work's share in cores.
    Processes that start and end between two samples are missed (rare for real disturbances).
    """

    def __init__(self, interval_s: float = 1.0):
        import threading

        self.interval_s = interval_s
        self.first: dict[tuple[int, float], float] = {}
        self.last: dict[tuple[int, float], float] = {}
        self.ours: set[tuple[int, float]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._start = 0.0
        self.cores: float | None = None

    def __enter__(self) -> "OthersWatch":
        self._start = time.perf_counter()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        wall = time.perf_counter() - self._start
        others = sum(self.last[k] - self.first[k] for k in self.last if k not in self.ours)
        self.cores = round(others / wall, 3) if wall > 0 else None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        ours = {(p.pid, p.create_time()) for p in [me, *me.children(recursive=True)] if _alive(p)}
        self.ours |= ours
        for p in psutil.process_iter(["pid", "create_time", "cpu_times"]):
            t = p.info["cpu_times"]
            if t is None:
                continue
            key = (p.info["pid"], p.info["create_time"])
            self.first.setdefault(key, t.user + t.system)
            self.last[key] = t.user + t.system


def _alive(p) -> bool:
    try:
        p.create_time()
        return True
    except Exception:  # psutil.NoSuchProcess / AccessDenied: gone or not ours to read
        return False


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    name: str
    quick: bool
    settings: dict                      # what was run: model, sizes, counts, sampling
    rows: list[dict]                    # one per measured case; the markdown table's rows
    columns: list[tuple[str, str]]      # (row key, column header) for the markdown table
    summary: dict = field(default_factory=dict)   # headline ratios and goals
    notes: list[str] = field(default_factory=list)
    status: str = "ok"                  # ok | skipped
    extra: dict = field(default_factory=dict)     # raw per-repeat timings and the like


def write_result(result: Result, out_dir: Path, machine: dict, load_before: list[float],
                 load_after: list[float], seconds: float, others_cores: float | None = None) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    quiet = judge_quiet(load_before, load_after, others_cores=others_cores)
    doc = {"name": result.name, "status": result.status, "quick": result.quick,
           "machine": machine, "load_before": load_before, "load_after": load_after, "others_cores": others_cores,
           "quiet": quiet.quiet, "not_quiet_reason": quiet.reason,
           "benchmark_seconds": round(seconds, 1), "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
           "settings": result.settings, "summary": result.summary, "rows": result.rows,
           "notes": result.notes, "extra": result.extra}
    json_path = out_dir / f"{result.name}.json"
    json_path.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
    md_path = out_dir / f"{result.name}.md"
    md_path.write_text(markdown(result, machine, load_before, load_after, others_cores))
    return json_path, md_path


def markdown(result: Result, machine: dict, load_before: list[float], load_after: list[float],
             others_cores: float | None = None) -> str:
    title = f"### {result.name}" + (" (quick)" if result.quick else "")
    others = "" if others_cores is None else f"; other processes meanwhile: {others_cores:.2f} cores on average"
    lines = [title, "",
             f"{machine['nproc']} × {machine['cpu']}, {machine['ram_gib']} GiB; load average "
             f"{load_before[0]:.1f} before, {load_after[0]:.1f} after{others}.", ""]
    quiet = judge_quiet(load_before, load_after, others_cores=others_cores)
    if not quiet.quiet:
        lines += [f"**Warning: not quiet** ({quiet.reason}): other work shared the cores; "
                  "absolute times are upper bounds and ratios may be off.", ""]
    if result.status != "ok":
        lines += [f"**{result.status}**: " + "; ".join(result.notes), ""]
        return "\n".join(lines)
    if result.rows:
        lines.append("| " + " | ".join(h for _, h in result.columns) + " |")
        lines.append("|" + "---|" * len(result.columns))
        for row in result.rows:
            lines.append("| " + " | ".join(_cell(row.get(k)) for k, _ in result.columns) + " |")
        lines.append("")
    for k, v in result.summary.items():
        lines.append(f"- {k}: {_cell(v)}")
    for n in result.notes:
        lines.append(f"- {n}")
    return "\n".join(lines) + "\n"


def _cell(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


# --------------------------------------------------------------------------- timing


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def alternation_order(first: str, second: str, rounds: int) -> list[str]:
    """Who runs when: first, second, first, second, … for `rounds` rounds."""
    return [first, second] * rounds


def spread(values: list[float]) -> dict:
    """Median and spread (min–max) of one contender's measured rounds."""
    return {"median": median(values), "min": float(min(values)), "max": float(max(values)), "n": len(values)}


def ratio_of_medians(a: list[float], b: list[float]) -> float:
    """median(a) / median(b): the headline ratio of two contenders."""
    return median(a) / median(b)


class Rounds:
    """Two contenders measured alternately, round by round (A B A B …).

    Either `run` calls both (one value each per call), or an outside loop (e.g. a trainer's
    callback) calls `record` in the same order; an out-of-turn `record` raises. The first
    `warmup` rounds are recorded but left out of `stats`.
    """

    def __init__(self, first: str, second: str, rounds: int, warmup: int = 1):
        self.names, self.rounds, self.warmup = (first, second), rounds, warmup
        self.order = alternation_order(first, second, warmup + rounds)
        self.values: dict[str, list[float]] = {first: [], second: []}
        self.raw: dict[str, list] = {first: [], second: []}   # whatever each call returned besides its value

    @property
    def done(self) -> bool:
        return sum(map(len, self.values.values())) == len(self.order)

    def record(self, name: str, value: float, raw=None) -> None:
        turn = self.order[sum(map(len, self.values.values()))] if not self.done else None
        if name != turn:
            raise RuntimeError(f"bench: {name} measured out of turn (expected {turn})")
        self.values[name].append(float(value))
        self.raw[name].append(raw)

    def run(self, calls: dict[str, Callable[[], tuple[float, object]]], progress: str = "") -> "Rounds":
        """Call each contender in turn; each call returns (value, raw)."""
        for i, name in enumerate(self.order):
            value, raw = calls[name]()
            self.record(name, value, raw)
            if progress and i % 2:
                print(f"{progress}: round {i // 2 + 1 - self.warmup}/{self.rounds}"
                      f"{' (warm-up)' if i // 2 < self.warmup else ''}: " +
                      ", ".join(f"{n} {self.values[n][-1]:.3g}" for n in self.names), flush=True)
        return self

    def measured(self, name: str) -> list[float]:
        return self.values[name][self.warmup:]

    def stats(self, ratio: tuple[str, str] | None = None) -> dict:
        """Per contender median/min/max/n over the measured rounds, and the ratio of the medians
        `ratio` = (numerator, denominator), by default (first, second)."""
        num, den = ratio or self.names
        return {**{n: spread(self.measured(n)) for n in self.names},
                "ratio": ratio_of_medians(self.measured(num), self.measured(den)), "ratio_of": f"{num} / {den}",
                "order": f"alternating, {self.names[0]} first, {self.warmup} warm-up round(s) not counted"}
