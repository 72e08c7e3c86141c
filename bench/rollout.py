"""Rollout throughput: our vLLM rollout actor pool vs Hugging Face `generate`.

Same ~75M-parameter Llama (random weights), same prompts, same sampling (T=1, top-p 1, no
top-k), same number of samples and new tokens. Ours: real `RolloutActor`s behind Ray, the
prompts split over the pool the way the driver splits them, each actor with the threads a
run gives it (`rlaif_ray.cores`), timed from the driver until every actor's stats have
arrived (the shards stay in the object store, as in training). Two layouts: the embedded
default's one engine using every core, and two engines sharing them (2 × 1 thread on 2 cores).
Hugging Face: one `model.generate` over the whole batch (its best case: one big batch) in
the benchmark process with all cores' threads. Each layout alternates with HF round by round
(`bench.common.Rounds`: ours, HF, ours, HF, …, one warm-up round first), so a change of load
on the shared machine hits both; each is reported as median and min–max.

    tokens/s = generated tokens (up to and including eos) / wall seconds
    ratio    = ours tokens/s / HF tokens/s        (goal ≥ 1.5× on CPU)
"""

from __future__ import annotations

import os
import time

import numpy as np

from bench.common import Result, Rounds, median
from bench.workloads import LLAMA_75M, bench_config, bench_model, model_params, tiny_models, tokenized_prompts

GOAL = 1.5


def run(quick: bool) -> Result:
    import torch

    from rlaif_ray.driver.runtime import ray_session
    from rlaif_ray.modeling import load_causal_lm

    path = tiny_models()["policy"] if quick else bench_model(LLAMA_75M)
    n_prompts, group, new_tokens, repeats = (4, 2, 8, 1) if quick else (16, 4, 32, 3)
    cores = os.cpu_count() or 1
    layouts = [1] if quick or cores == 1 else [1, 2]  # engines; the first is the embedded default's
    cfgs = [bench_config(f"rollout.num_actors={n}", f"rollout.sampling.samples_per_prompt={group}",
                         f"rollout.sampling.max_new_tokens={new_tokens}", "rollout.sampling.top_k=-1",
                         "rollout.sampling.top_p=1.0", "rollout.sampling.temperature=1.0", policy=path) for n in layouts]
    prompts = tokenized_prompts(cfgs[0], n_prompts)
    settings = {"model": str(path.name), "params": model_params(path), "prompts": n_prompts,
                "samples_per_prompt": group, "max_new_tokens": new_tokens, "temperature": 1.0,
                "top_k": "off", "top_p": 1.0, "rollout_layouts": layouts, "repeats": repeats,
                "hf_threads": cores, "dtype": "float32"}
    measured = []
    with ray_session(cfgs[0].ray):
        torch.set_num_threads(cores)
        hf = load_causal_lm(str(path)).eval()

        def hf_generate(rounds: Rounds) -> tuple[float, tuple[float, int]]:
            start = time.perf_counter()
            tokens = hf_sample(hf, [p.token_ids for p in prompts], group, new_tokens, seed=len(rounds.values["hf"]))
            seconds = time.perf_counter() - start
            return tokens / seconds, (seconds, tokens)

        for cfg in cfgs:  # one pool at a time: an idle pool would hold memory, not cores
            measured.append(_layout_rounds(cfg, prompts, repeats, hf_generate))
    return _result(measured, quick, settings, repeats)


def _layout_rounds(cfg, prompts: list, repeats: int, hf_generate) -> tuple[int, int, Rounds]:
    """(engines, threads each, the rounds) of one layout's pool alternating with HF."""
    from actors.rollout import RolloutActor
    from rlaif_ray.driver.pools import ActorPool, get_with_timeout
    from rlaif_ray.driver.roles import run_threads
    from rlaif_ray.driver.runtime import actor_env

    n, threads = cfg.rollout.num_actors, run_threads(cfg, reference=False)["rollout"]
    rounds = Rounds("ours", "hf", repeats, warmup=1)  # value: tokens/s; raw: (seconds, tokens)
    pool = ActorPool("rollout", RolloutActor, cfg.rollout.resources, n, lambda r: (cfg, r), actor_env(cfg.ray),
                     cfg.run.startup_timeout_s, threads=threads)
    try:
        pool.wait_ready(cfg.run.startup_timeout_s)
        chunks = [list(c) for c in np.array_split(np.arange(len(prompts)), n)]
        items = [[(prompts[i].index, prompts[i].token_ids, prompts[i].text) for i in c] for c in chunks]

        def ours() -> tuple[float, tuple[float, int]]:
            start = time.perf_counter()
            calls = [a.generate.remote(it, 0) for a, it in zip(pool.actors, items)]
            stats = get_with_timeout([s for _, s in calls], cfg.run.call_timeout_s, "rollout", "generate")
            seconds, tokens = time.perf_counter() - start, sum(s["tokens"] for s in stats)
            return tokens / seconds, (seconds, tokens)

        # The warm-up round (first-call allocations, lazy inits) is recorded, not counted.
        rounds.run({"ours": ours, "hf": lambda: hf_generate(rounds)},
                   progress=f"rollout: {n} engine(s) × {threads} thread(s) vs HF tokens/s")
    finally:
        pool.shutdown()
    return n, threads, rounds


def _result(measured: list[tuple[int, int, Rounds]], quick: bool, settings: dict, repeats: int) -> Result:
    """One table row per system per layout (median seconds, tokens, tokens/s); the ratio of
    each layout against the HF rounds it alternated with, the first (the default's) against the goal."""
    rows, ratios, extra = [], {}, {}
    for n, threads, rounds in measured:
        st = rounds.stats()
        raw = {name: rounds.raw[name][rounds.warmup:] for name in rounds.names}  # (seconds, tokens) each
        each = f"{threads} thread{'s' if threads != 1 else ''}"
        layout = f"{n} × {each}"
        ratios[layout] = st["ratio"]
        extra[layout] = {"rounds": st, **{f"{name}_seconds": [s for s, _ in raw[name]] for name in rounds.names},
                         **{f"{name}_tokens": [t for _, t in raw[name]] for name in rounds.names}}
        for name, system in (("ours", f"rlaif-ray rollout pool ({n} × vLLM actor, {each} each)"),
                             ("hf", f"HF transformers generate (1 process), alternating with the {n}-engine pool")):
            rows.append({"system": system, "seconds": median([s for s, _ in raw[name]]),
                         "tokens": int(median([t for _, t in raw[name]])), "tokens_per_s": st[name]["median"],
                         "min": st[name]["min"], "max": st[name]["max"]})
    default = next(iter(ratios.values()))
    summary = {f"ratio (ours / HF tokens/s, medians), {layout}": r for layout, r in ratios.items()}
    summary |= {"rounds": f"{repeats} per layout, alternating with HF", "goal": f"≥ {GOAL}× (the default's layout, first)",
                "goal met": bool(default >= GOAL)}
    return Result("rollout", quick, settings, rows,
                  [("system", "system"), ("seconds", "s / batch (median)"), ("tokens", "tokens"),
                   ("tokens_per_s", "tokens/s (median)"), ("min", "min"), ("max", "max")],
                  summary=summary, extra=extra)


def hf_sample(model, prompt_ids: list[list[int]], group: int, max_new_tokens: int, seed: int) -> int:
    """`group` samples per prompt with HF `generate` in one left-padded batch; returns the
    number of generated tokens (up to and including eos, not the padding after it)."""
    import torch

    pad, eos = 0, model.config.eos_token_id
    rows = [p for p in prompt_ids for _ in range(group)]
    width = max(len(p) for p in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(rows):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0,
                             top_p=1.0, max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=eos)
    new = out[:, width:]
    tokens = 0
    for row in new.tolist():
        tokens += row.index(eos) + 1 if eos in row else len(row)
    return tokens
