"""Rollout throughput: our vLLM rollout actor pool vs Hugging Face `generate`.

Same ~75M-parameter Llama (random weights), same prompts, same sampling (T=1, top-p 1, no
top-k), same number of samples and new tokens. Ours: real `RolloutActor`s behind Ray, the
prompts split over the pool the way the driver splits them, timed from the driver until
every actor's stats have arrived (the shards stay in the object store, as in training).
Hugging Face: one `model.generate` over the whole batch (its best case: one big batch) in
the benchmark process with all cores' threads. The two alternate round by round
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

    from actors.rollout import RolloutActor
    from rlaif_ray.driver.pools import ActorPool, get_with_timeout
    from rlaif_ray.driver.runtime import actor_env, ray_session
    from rlaif_ray.modeling import load_causal_lm

    path = tiny_models()["policy"] if quick else bench_model(LLAMA_75M)
    n_prompts, group, new_tokens, repeats = (4, 2, 8, 1) if quick else (16, 4, 32, 3)
    n_actors = 1 if quick else min(2, os.cpu_count() or 1)
    cfg = bench_config(f"rollout.num_actors={n_actors}", f"rollout.sampling.samples_per_prompt={group}",
                       f"rollout.sampling.max_new_tokens={new_tokens}", "rollout.sampling.top_k=-1",
                       "rollout.sampling.top_p=1.0", "rollout.sampling.temperature=1.0", policy=path)
    prompts = tokenized_prompts(cfg, n_prompts)
    settings = {"model": str(path.name), "params": model_params(path), "prompts": n_prompts,
                "samples_per_prompt": group, "max_new_tokens": new_tokens, "temperature": 1.0,
                "top_k": "off", "top_p": 1.0, "rollout_actors": n_actors, "repeats": repeats,
                "hf_threads": os.cpu_count(), "dtype": "float32"}
    rounds = Rounds("ours", "hf", repeats, warmup=1)  # value: tokens/s; raw: (seconds, tokens)
    with ray_session(cfg.ray):
        timeout = cfg.run.startup_timeout_s
        pool = ActorPool("rollout", RolloutActor, cfg.rollout.resources, n_actors, lambda r: (cfg, r),
                         actor_env(cfg.ray), timeout)
        try:
            pool.wait_ready(timeout)
            torch.set_num_threads(os.cpu_count() or 1)
            hf = load_causal_lm(str(path)).eval()
            chunks = [list(c) for c in np.array_split(np.arange(n_prompts), n_actors)]
            items = [[(prompts[i].index, prompts[i].token_ids, prompts[i].text) for i in c] for c in chunks]

            def ours() -> tuple[float, tuple[float, int]]:
                start = time.perf_counter()
                calls = [a.generate.remote(it, 0) for a, it in zip(pool.actors, items)]
                stats = get_with_timeout([s for _, s in calls], cfg.run.call_timeout_s, "rollout", "generate")
                seconds, tokens = time.perf_counter() - start, sum(s["tokens"] for s in stats)
                return tokens / seconds, (seconds, tokens)

            def hf_generate() -> tuple[float, tuple[float, int]]:
                start = time.perf_counter()
                tokens = hf_sample(hf, [p.token_ids for p in prompts], group, new_tokens, seed=len(rounds.values["hf"]))
                seconds = time.perf_counter() - start
                return tokens / seconds, (seconds, tokens)

            # The warm-up round (first-call allocations, lazy inits) is recorded, not counted.
            rounds.run({"ours": ours, "hf": hf_generate}, progress="rollout: ours vs HF tokens/s")
        finally:
            pool.shutdown()
    return _result(rounds, quick, settings, n_actors, repeats)


def _result(rounds: Rounds, quick: bool, settings: dict, n_actors: int, repeats: int) -> Result:
    """The table (median seconds, tokens and tokens/s per system) and the ratio against the goal."""
    st = rounds.stats()
    ratio = st["ratio"]
    raw = {n: rounds.raw[n][rounds.warmup:] for n in rounds.names}
    rows = [{"system": system, "seconds": median([s for s, _ in raw[n]]), "tokens": int(median([t for _, t in raw[n]])),
             "tokens_per_s": st[n]["median"], "min": st[n]["min"], "max": st[n]["max"]}
            for n, system in (("ours", f"rlaif-ray rollout pool ({n_actors} × vLLM actor)"),
                              ("hf", "HF transformers generate (1 process)"))]
    return Result("rollout", quick, settings, rows,
                  [("system", "system"), ("seconds", "s / batch (median)"), ("tokens", "tokens"),
                   ("tokens_per_s", "tokens/s (median)"), ("min", "min"), ("max", "max")],
                  summary={"ratio (ours / HF tokens/s, medians)": ratio, "rounds": f"{repeats}, alternating",
                           "goal": f"≥ {GOAL}×", "goal met": bool(ratio >= GOAL)},
                  extra={"rounds": st, "ours_seconds": [s for s, _ in raw["ours"]],
                         "ours_tokens": [t for _, t in raw["ours"]], "hf_seconds": [s for s, _ in raw["hf"]],
                         "hf_tokens": [t for _, t in raw["hf"]]})


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
