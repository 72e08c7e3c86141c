"""Scaling: iteration time and tokens/s against rollout actors (1, 2, 4) and prompts (×1, ×2, ×4).

The embedded default run (configs/local.yaml on the tiny models: PPO, direct-RLAIF labeler,
reference, 1 DeepSpeed learner). One Ray and one set of roles with 4 rollout actors serves
every point: a point with k actors drives the first k (the others stay idle in the same
Ray, holding only memory), and an actor joining a point first loads the newest weights
through `WeightSync.load_latest`, as a replacement actor would. Prompt multiples keep the
minibatch size, so ×4 prompts is 4× the optimiser steps. Each point: one warm-up iteration,
then the median of the measured ones.

    tokens/s         = response tokens / iteration wall seconds     (`throughput/tokens_per_s`)
    rollout tokens/s = response tokens / rollout-stage seconds      (what more actors can speed up)
"""

from __future__ import annotations

import copy

from tqdm import tqdm

from bench.common import Result, median
from bench.workloads import bench_config, live_run


def run(quick: bool) -> Result:
    from rlaif_ray.driver.train import run_iteration

    points = [(1, 1)] if quick else [(1, 1), (2, 1), (4, 1), (2, 2), (2, 4)]  # (actors, prompts ×)
    max_actors = max(a for a, _ in points)
    measured = 1 if quick else 3
    # Every iteration the benchmark runs is within the run's length: the pipeline starts no
    # batch past run.iterations (configs/local.yaml says 12; the points take 20).
    cfg = bench_config(f"rollout.num_actors={max_actors}", f"run.iterations={len(points) * (1 + measured)}",
                       *(["data.prompts_per_iteration=4"] if quick else []),
                       *(["ppo.minibatch_size=16"] if quick else []), labeler=True)
    base_prompts = cfg.data.prompts_per_iteration
    rows, raw = [], {}
    with live_run(cfg) as run:
        full_pool = run.roles.rollout
        ready = 1  # actors already on the newest weights: every sync goes to the active ones
        for actors, mult in tqdm(points, desc="scaling points", unit="point"):
            pool = copy.copy(full_pool)
            pool.actors = full_pool.actors[:actors]
            for i in range(ready, actors):
                run.sync.load_latest(full_pool.actors[i], f"rollout-{i}")
            # Actors past `actors` miss the syncs of this point: they catch up when they join.
            ready = actors
            run.roles.rollout = pool
            n = base_prompts * mult
            run.cfg = run.cfg.model_copy(update={"data": run.cfg.data.model_copy(update={"prompts_per_iteration": n})})
            its = [run_iteration(run) for _ in range(1 + measured)][1:]
            key = f"{actors}x{mult}"
            raw[key] = its
            rows.append({"actors": actors, "prompts": n, "samples": n * cfg.rollout.sampling.samples_per_prompt,
                         "iteration_s": median([r["timing/iteration"] for r in its]),
                         "rollout_s": median([r["timing/rollout"] for r in its]),
                         "tokens_per_s": median([r["throughput/tokens_per_s"] for r in its]),
                         "rollout_tokens_per_s": median([_tokens(r) / r["timing/rollout"] for r in its])})
        run.roles.rollout = full_pool
    base = rows[0]
    for r in rows:
        r["speedup"] = r["tokens_per_s"] / base["tokens_per_s"]
    settings = {"config": "configs/local.yaml (tiny models)",
                "points": [f"{a} actors, ×{m} prompts" for a, m in points], "base_prompts_per_iteration": base_prompts,
                "samples_per_prompt": cfg.rollout.sampling.samples_per_prompt,
                "max_new_tokens": cfg.rollout.sampling.max_new_tokens, "measured_iterations_per_point": measured}
    return Result("scaling", quick, settings, rows,
                  [("actors", "rollout actors"), ("prompts", "prompts / iteration"), ("samples", "samples"),
                   ("iteration_s", "s / iteration"), ("rollout_s", "of which rollout"),
                   ("tokens_per_s", "tokens/s"), ("speedup", "tokens/s vs 1 actor ×1"),
                   ("rollout_tokens_per_s", "rollout-stage tokens/s")],
                  extra={"iterations": raw})


def _tokens(row: dict) -> float:
    return row["response_length/mean"] * row["data/samples"]
