"""Layouts: the embedded default as shipped (one learner and one rollout engine, each using
every core on its turn) vs two one-thread engines, and vs two engines and two learners.

Issue 13 asks whether, on one small machine where the roles take turns, a role should use
all the cores on its turn (e.g. one learner with every core instead of two one-thread
learners that all-reduce). Each layout is a fresh run of the embedded default (tiny models,
direct-RLAIF labeler, PPO with a critic); the layouts alternate round by round, and the
first `WARMUP` iterations of each run are left out. Each role's threads are what the run
derives for it (`rlaif_ray.cores.role_threads`): the cores over the actors of its stage.
"""

from __future__ import annotations


import numpy as np
from tqdm import tqdm

from bench.common import Result, median, spread
from bench.workloads import bench_config, live_run

WARMUP = 2
STAGES = ("rollout", "score", "train", "sync", "probe")


def layouts() -> dict[str, list[str]]:
    # Threads follow the layout (rlaif_ray.cores): a role alone in its stage uses every core.
    return {
        "as shipped (1 learner, 1 rollout engine)": [],
        "1 learner, 2 rollout engines": ["rollout.num_actors=2"],
        "2 learners, 2 rollout engines": ["learner.num_workers=2", "rollout.num_actors=2"],
    }


def run(quick: bool) -> Result:
    from rlaif_ray.driver.train import run_iteration

    rounds, iterations = (1, WARMUP + 1) if quick else (2, 10)
    runs: dict[str, list[list[dict]]] = {name: [] for name in layouts()}
    for _ in tqdm(range(rounds), desc="layout rounds", unit="round"):
        for name, sets in layouts().items():
            cfg = bench_config(*sets, f"run.iterations={iterations}", "run.checkpoint_every_minutes=0", labeler=True)
            with live_run(cfg) as live:
                runs[name].append([run_iteration(live) for _ in range(iterations)])
    rows = []
    for name, rs in runs.items():
        measured = [it for r in rs for it in r[WARMUP:]]
        secs = [it["timing/iteration"] for it in measured]
        s = spread(secs)
        row = {"layout": name, "iteration_s": median(secs), "spread": f"{s['min']:.3f}–{s['max']:.3f}",
               "reward_last": float(np.mean([it["reward/mean"] for r in rs for it in r[-3:]]))}
        row.update({stage: median([it[f"timing/{stage}"] for it in measured]) for stage in STAGES})
        rows.append(row)
    for row in rows:
        row["vs_shipped"] = row["iteration_s"] / rows[0]["iteration_s"]
    settings = {"config": "configs/local.yaml (tiny models), labeler on", "layouts": layouts(), "rounds": rounds,
                "iterations_per_run": iterations, "warmup_iterations": WARMUP}
    return Result("layouts", quick, settings, rows,
                  [("layout", "layout"), ("iteration_s", "s / iteration"), ("spread", "min–max"),
                   ("vs_shipped", "time vs shipped"), *[(s, f"{s} s") for s in STAGES], ("reward_last", "reward last 3")],
                  extra={"iterations": runs})
