"""Weight sync: seconds per sync through `ObjectStoreSync` vs one `np.copyto` of the same bytes.

For each model size: a real `LearnerWorker` (DeepSpeed, world size 1) and real vLLM
`RolloutActor`s; one sync = learner gathers its weights into buckets and puts them into the
object store, every rollout actor loads them into its live engine and resets its prefix
cache (`WeightSync.push`, timed from the driver). The floor it is compared with: one
in-process `np.copyto` of the same number of bytes (warm pages on both sides), the least any
transfer of those bytes can cost on this machine. The two are measured alternately.

    ratio = seconds per sync / seconds per np.copyto      (goal ≤ 4× at every size)
"""

from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

from bench.common import Result, median
from bench.workloads import SYNC_SHAPES, bench_config, bench_model, model_params, tiny_models

GOAL = 4.0


def run(quick: bool) -> Result:
    from rlaif_ray.driver.runtime import ray_session

    models = [("tiny-policy", tiny_models()["policy"])] if quick else [(s.name, bench_model(s)) for s in SYNC_SHAPES]
    n_rollouts, repeats = (1, 2) if quick else (2, 3)
    rows, extra = [], {}
    # 1 GiB object store: a sync puts the new buckets while the previous version's are still
    # referenced (for replacement actors), so two copies of a 290 MB model must fit.
    base_cfg = bench_config("ray.object_store_mib=1024")
    with ray_session(base_cfg.ray):
        for name, path in tqdm(models, desc="sync: model sizes", unit="model"):
            row, raw = _one_size(name, path, n_rollouts, repeats)
            rows.append(row)
            extra[name] = raw
    worst = max(r["ratio"] for r in rows)
    summary = {"worst ratio (sync / np.copyto)": worst, "goal": f"≤ {GOAL}× at every size",
               "goal met": bool(worst <= GOAL)}
    if len(rows) > 1:
        # Growth: linear fit of seconds against MB; the intercept is the fixed cost per sync.
        mb = np.array([r["mb"] for r in rows])
        slope, intercept = np.polyfit(mb, np.array([r["sync_s"] for r in rows]), 1)
        cslope, _ = np.polyfit(mb, np.array([r["copy_s"] for r in rows]), 1)
        summary.update({"sync s per GB (fit)": slope * 1000, "sync fixed s (fit intercept)": intercept,
                        "np.copyto s per GB (fit)": cslope * 1000})
    settings = {"rollout_actors": n_rollouts, "repeats": repeats, "bucket_mib": base_cfg.sync.bucket_mib,
                "learner": "1 DeepSpeed worker, ZeRO-0, fp32", "object_store_mib": 1024,
                "models": [r["model"] for r in rows]}
    return Result("sync", quick, settings, rows,
                  [("model", "model"), ("mb", "MB (fp32)"), ("sync_s", "s / sync (median)"),
                   ("gather_s", "of which gather+put"),
                   ("engine_load_s", "1 engine's load alone"), ("copy_s", "s / np.copyto"), ("ratio", "ratio")],
                  summary=summary, extra=extra)


def _one_size(name: str, path, n_rollouts: int, repeats: int) -> tuple[dict, dict]:
    from actors.learner import LearnerWorker
    from actors.rollout import RolloutActor
    from rlaif_ray.driver.pools import ActorPool, get_with_timeout
    from rlaif_ray.driver.runtime import actor_env
    from rlaif_ray.weight_sync.driver import ObjectStoreSync

    cfg = bench_config("ray.object_store_mib=1024", "learner.num_workers=1", "ppo.algorithm=grpo",
                       f"rollout.num_actors={n_rollouts}", policy=path)
    env, timeout = actor_env(cfg.ray), cfg.run.startup_timeout_s
    learners = ActorPool("learner", LearnerWorker, cfg.learner.resources, 1, lambda r: (cfg, r, 1), env, timeout)
    rollouts = ActorPool("rollout", RolloutActor, cfg.rollout.resources, n_rollouts, lambda r: (cfg, r), env, timeout)
    try:
        addr, port = get_with_timeout(learners.actors[0].rendezvous_address.remote(), timeout, "learner-0", "start-up")
        get_with_timeout(learners.actors[0].setup.remote(addr, port), timeout, "learner-0", "DeepSpeed set-up")
        rollouts.wait_ready(timeout)
        nbytes = model_params(path) * 4
        src = np.ones(nbytes, dtype=np.uint8)
        dst = np.zeros_like(src)
        sync = ObjectStoreSync(cfg.sync)
        version = 0

        def one_sync() -> tuple[float, float]:
            nonlocal version
            version += 1
            start = time.perf_counter()
            stats = sync.push(learners, rollouts, version)
            return time.perf_counter() - start, stats["sync/seconds_gather"]

        def one_copy() -> float:
            start = time.perf_counter()
            np.copyto(dst, src)
            return time.perf_counter() - start

        def one_engine_load() -> float:
            """One engine alone loading the newest buckets (actor-side seconds): where sync time goes."""
            return get_with_timeout(rollouts.actors[0].weight_receiver.remote("load", sync.latest, version),
                                    cfg.sync.timeout_s, "rollout-0", "weight load")

        one_sync(), one_copy()  # warm-up
        syncs, gathers, copies, loads = [], [], [], []
        for _ in range(repeats):
            s, g = one_sync()
            syncs.append(s); gathers.append(g)
            copies.append(median([one_copy() for _ in range(3)]))
            loads.append(one_engine_load())
    finally:
        rollouts.shutdown()
        learners.shutdown()
    row = {"model": name, "params": model_params(path), "mb": round(nbytes / 1e6, 1), "sync_s": median(syncs),
           "gather_s": median(gathers), "engine_load_s": median(loads), "copy_s": median(copies),
           "ratio": median(syncs) / median(copies)}
    return row, {"sync_seconds": syncs, "gather_seconds": gathers, "copy_seconds": copies,
                 "engine_load_alone_seconds": loads}
