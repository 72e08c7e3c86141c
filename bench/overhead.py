"""Orchestration overhead of an iteration of the embedded default run.

The metrics rows hold the driver's wall seconds per stage (`timing/<stage>`). What the
actors spend inside their calls comes from Ray's task events (`ray.timeline()`: start and
duration of every actor method). Per stage, the actor seconds are those of its slowest
actor; calls that run concurrently (rewards ‖ reference ‖ old logprobs in `score`) count
once, as the slowest of them; calls that follow each other inside a stage (sync: gather,
then load; probe: engine, then learner; one actor's calls on successive chunks) add up. Then

    overhead = iteration wall − prompts − |∪ every actor call's span|
    fraction = overhead / iteration wall                       (goal ≤ 10 %)

i.e. the time during which no actor computes: Ray call and scheduling latency, argument and
result transfer, the driver's own work and its waiting between calls. Not wall − Σ stages:
the labeler scores a rollout chunk while the next one still generates, so a stage's actor
seconds may include work done during the stage before (its row's gap is then negative).
"""

from __future__ import annotations

import time

from tqdm import tqdm

from bench.common import Result, median
from bench.workloads import bench_config, live_run

GOAL = 0.10
STAGES = ("prompts", "rollout", "score", "train", "sync", "probe")
# stage -> phases run one after another; each phase: methods running concurrently.
PHASES = {
    "rollout": [("RolloutActor.generate",)],
    "score": [("LabelerActor.direct_rewards", "ReferenceActor.logprobs")],
    "train": [("LearnerWorker.ppo_step",)],
    "sync": [("LearnerWorker.weight_sender",), ("RolloutActor.weight_receiver",)],
    "probe": [("RolloutActor.probe",), ("LearnerWorker.probe_logprobs",)],
}


def run(quick: bool) -> Result:
    import ray

    from rlaif_ray.driver.train import run_iteration

    measured = 1 if quick else 5
    cfg = bench_config(*(["data.prompts_per_iteration=4", "ppo.minibatch_size=16"] if quick else []), labeler=True)
    windows, rows = [], []
    with live_run(cfg) as run:
        run_iteration(run)  # warm-up
        for _ in tqdm(range(measured), desc="overhead: iterations", unit="iter"):
            start = time.time()
            rows.append(run_iteration(run))
            windows.append((start, time.time()))
        events = _actor_events(ray)
    per_iter = [_breakdown(row, events, window) for row, window in zip(rows, windows)]
    table = []
    for stage in STAGES:
        table.append({"stage": stage, "driver_s": median([p["driver"][stage] for p in per_iter]),
                      "actor_s": median([p["actor"][stage] for p in per_iter])})
    wall = median([p["wall"] for p in per_iter])
    fractions = [p["overhead"] / p["wall"] for p in per_iter]
    table.append({"stage": "iteration (wall; actors: some computing)", "driver_s": wall,
                  "actor_s": median([p["wall"] - p["overhead"] for p in per_iter])})
    for r in table:
        r["gap_s"] = r["driver_s"] - r["actor_s"]
    frac = median(fractions)
    settings = {"config": "configs/local.yaml (tiny models)", "measured_iterations": measured,
                "prompts_per_iteration": cfg.data.prompts_per_iteration,
                "samples": cfg.samples_per_iteration}
    return Result("overhead", quick, settings, table,
                  [("stage", "stage"), ("driver_s", "driver s (timing/<stage>)"), ("actor_s", "slowest actor s"),
                   ("gap_s", "driver − actor s")],
                  summary={"overhead fraction of wall (median)": frac,
                           "overhead s (median)": median([p["overhead"] for p in per_iter]),
                           "goal": f"≤ {GOAL:.0%}", "goal met": bool(frac <= GOAL)},
                  extra={"per_iteration": per_iter})


def _actor_events(ray, settle_s: float = 3.0, tries: int = 5) -> list[dict]:
    """Actor-method spans from Ray's task events; waits until they stop arriving (workers
    report them about once a second)."""
    last = -1
    events: list[dict] = []
    for _ in range(tries):
        time.sleep(settle_s)
        events = [e for e in ray.timeline() if e.get("cat", "").startswith("task::") and e.get("ph") == "X"]
        if len(events) == last:
            break
        last = len(events)
    return events


def _breakdown(row: dict, events: list[dict], window: tuple[float, float]) -> dict:
    """Per stage: the driver's seconds and the slowest actor's; the iteration's overhead."""
    lo, hi = window[0] * 1e6, window[1] * 1e6
    spans: dict[str, list[float]] = {}
    calls: list[tuple[str, str, float, float]] = []  # (method, worker, start s, end s)
    for e in events:
        if lo <= e["ts"] and e["ts"] + e["dur"] <= hi:
            method = e["cat"].removeprefix("task::")
            spans.setdefault(method, []).append(e["dur"] / 1e6)
            calls.append((method, e.get("tid", ""), e["ts"] / 1e6, (e["ts"] + e["dur"]) / 1e6))
    actor = {"prompts": row["timing/prompts"]}  # the driver's own work: no actor involved
    for stage, phases in PHASES.items():
        # One actor's calls in a phase follow each other (e.g. the labeler scores one chunk per
        # rollout engine, in turn): its busy time is the union of their spans (a queued call's
        # span starts when it arrives); different actors run at once: the busiest counts.
        actor[stage] = sum(max((busy_seconds([(a, b) for m, w, a, b in calls if m in phase and w == worker])
                                for worker in {w for m, w, _, _ in calls if m in phase}), default=0.0)
                           for phase in phases)
    driver = {s: row[f"timing/{s}"] for s in STAGES}
    wall = row["timing/iteration"]
    # Stages overlap (a chunk is scored while the next one generates), so the iteration's
    # overhead is the time during which no actor computed at all, not wall − Σ stages.
    computing = busy_seconds([(a, b) for _, _, a, b in calls])
    return {"wall": wall, "driver": driver, "actor": actor, "overhead": wall - row["timing/prompts"] - computing,
            "methods": {m: max(v) for m, v in spans.items()}}


def busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total
