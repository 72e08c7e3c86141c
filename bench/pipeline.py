"""Pipelined RLAIF: the same run at `pipeline.max_staleness` k = 0, 1, 2, with the same placement.

Overlap pays when roles have hardware of their own, as on a GPU cluster. On one CPU node the
benchmark emulates that with disjoint cores (`resources.cpu_affinity`): the inference roles
(rollout engine, labeler, reference) get the first half of the cores, the learner the second
half, as inference and training GPUs would be split. The
work: the embedded default (configs/local.yaml on the tiny models, direct-RLAIF labeler, PPO
with a critic) with one rollout actor and one learner, TIS correction at k ≥ 1.

Each k is a fresh run from the same weights; the ks alternate round by round (0 1 2 0 1 2 …).
Per k: median seconds per iteration and tokens/s over the measured iterations (the first
`WARMUP` of each run left out: start-up and filling the pipeline), mean per-role utilization,
and the reward curve (mean of the first and last 3 iterations over the rounds).

    ideal speed-up = k = 0's seconds per iteration (every stage back to back)
                     / max(inference cores' busy seconds, learner cores' busy seconds)
    where a group's busy seconds = Σ over its roles of utilization × the iteration's seconds:
    the time its cores must work per iteration, whatever overlaps.
"""

from __future__ import annotations

import os

import numpy as np
from tqdm import tqdm

from bench.common import Result, median, spread
from bench.workloads import bench_config, live_run

WARMUP = 2  # iterations of each run not timed: the first carries start-up costs, the second fills the pipeline
ROLES = ("rollout", "labeler", "reference", "learner")
INFERENCE = ("rollout", "labeler", "reference")  # the roles on the first half of the cores


def busy_s(row: dict, roles: tuple[str, ...]) -> float:
    """Seconds the given roles' actors worked in one iteration (one actor per role here)."""
    return row["timing/iteration"] * sum(row[f"utilization/{r}"] for r in roles)


def placement() -> dict[str, list[int]]:
    """Inference roles on the first half of this process's cores, the learner on the second."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise RuntimeError("bench pipeline needs at least 2 cores to give roles cores of their own")
    half = len(cores) // 2
    return {"rollout": cores[:half], "labeler": cores[:half], "reference": cores[:half], "learner": cores[half:]}


def config(k: int, iterations: int, cores: dict[str, list[int]]):
    sets = [f"pipeline.max_staleness={k}", f"run.iterations={iterations}", "rollout.num_actors=1",
            "learner.num_workers=1", "run.checkpoint_every_minutes=0"]
    sets += ["ppo.off_policy_correction=tis"] if k else []
    sets += [f"{role}.resources.cpu_affinity=[{','.join(map(str, c))}]" for role, c in cores.items()]
    return bench_config(*sets, labeler=True)


def one_run(k: int, iterations: int, cores: dict[str, list[int]]) -> list[dict]:
    from rlaif_ray.driver.train import run_iteration

    with live_run(config(k, iterations, cores)) as run:
        return [run_iteration(run) for _ in range(iterations)]


def run(quick: bool) -> Result:
    ks = [0, 1] if quick else [0, 1, 2]
    rounds, iterations = (1, WARMUP + 2) if quick else (2, 12)
    cores = placement()
    runs: dict[int, list[list[dict]]] = {k: [] for k in ks}
    for _ in tqdm(range(rounds), desc="pipeline rounds", unit="round"):
        for k in ks:
            runs[k].append(one_run(k, iterations, cores))
    rows = [summarize(k, runs[k]) for k in ks]
    base = rows[0]
    for r in rows:
        r["speedup"] = base["iteration_s"] / r["iteration_s"]
    measured = [it for rs in runs[0] for it in rs[WARMUP:]]
    wall = median([it["timing/iteration"] for it in measured])
    inference = median([busy_s(it, INFERENCE) for it in measured])
    learner = median([busy_s(it, ("learner",)) for it in measured])
    summary = {"ideal_speedup": wall / max(inference, learner), "k0_iteration_s": wall, "k0_inference_busy_s": inference,
               "k0_learner_busy_s": learner, "speedup_k1": rows[1]["speedup"], "goal_k1": 1.5}
    settings = {"config": "configs/local.yaml (tiny models), 1 rollout actor, 1 learner, TIS at k ≥ 1",
                "placement": {role: c for role, c in cores.items()}, "ks": ks, "rounds": rounds,
                "iterations_per_run": iterations, "warmup_iterations": WARMUP}
    notes = [f"ideal speed-up: k = 0's {wall:.3f} s per iteration over its busiest cores' work (inference "
             f"{inference:.3f} s, learner {learner:.3f} s) = "
             f"{summary['ideal_speedup']:.2f}x; k = 1 reached {rows[1]['speedup']:.2f}x"]
    return Result("pipeline", quick, settings, rows,
                  [("k", "max_staleness"), ("iteration_s", "s / iteration"), ("iteration_spread", "min–max"),
                   ("speedup", "iterations/s vs k=0"), ("tokens_per_s", "tokens/s"),
                   *[(f"util_{r}", f"util {r}") for r in ROLES], ("staleness", "staleness mean"),
                   ("reward_first", "reward first 3"), ("reward_last", "reward last 3")],
                  summary=summary, notes=notes, extra={"iterations": {str(k): runs[k] for k in ks}})


def summarize(k: int, runs: list[list[dict]]) -> dict:
    measured = [it for rs in runs for it in rs[WARMUP:]]
    secs = [it["timing/iteration"] for it in measured]
    s = spread(secs)
    curve = np.array([[it["reward/mean"] for it in rs] for rs in runs])  # rounds × iterations
    row = {"k": k, "iteration_s": median(secs), "iteration_spread": f"{s['min']:.3f}–{s['max']:.3f}",
           "tokens_per_s": median([it["throughput/tokens_per_s"] for it in measured]),
           "staleness": float(np.mean([it["pipeline/staleness/mean"] for it in measured])),
           "reward_first": float(curve[:, :3].mean()), "reward_last": float(curve[:, -3:].mean()),
           "reward_curve": curve.mean(axis=0).round(4).tolist()}
    for role in ROLES:
        row[f"util_{role}"] = float(np.mean([it.get(f"utilization/{role}", float("nan")) for it in measured]))
    return row
