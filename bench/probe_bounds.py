"""What the weight-sync probe reads on a real model, after correct and after broken syncs.

    .venv/bin/python -m bench.probe_bounds [--dtypes float32 bfloat16] [--seeds 5] [--json FILE]

The model is SmolLM2-135M-Instruct (the test suite's `smollm2` fixture, built on first use).
A learner (transformers) and a live vLLM engine start from the same weights; the learner's
weights then move as a PPO update would move them (AdamW steps of a given learning rate on
a fixed LM loss; Adam's step size per element is ~lr whatever the loss, so "lr × steps"
describes how far the weights went), and the new weights go to the engine by the project's
own path (buckets → `rlaif_ray.weight_sync.ends.load_into_engine`), correctly or broken on purpose:

- correct:        every tensor, prefix cache reset (what `sync` does);
- not synced:     the engine keeps the old weights (the upper end of what any bug can do);
- stale prefix:   every tensor, prefix cache NOT reset (KV of the probe prompt left from
                  the old weights);
- stale tensor:   every tensor but one (a middle layer's MLP down_proj sent old), cache reset;
- head not named: every tensor, cache reset, but without naming the tied output head
                  (`lm_head.weight`): the sync as it was before; on CPU vLLM then keeps the
                  head's pre-packed copy of the OLD embedding (see docs/weight-sync.md).

Each reading is the probe of the product (`sync/max_logprob_diff`): engine samples
PROBE_NEW_TOKENS tokens at T=1 from the probe prompt (through the prefix cache), the learner
scores them teacher-forced; max |Δ logprob|. It is taken with several sampling seeds; the
table shows the max over seeds (and the min). In bf16 the learner is the bf16 copy of fp32
master weights (as DeepSpeed's bf16 mode keeps them), so a tiny update may not change a
bf16 weight at all.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

# The engine must run in this process (weights are passed as tensors); vLLM reads this at import.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import REPO_ROOT, machine_info  # noqa: E402
from rlaif_ray.weight_sync.probe import PROBE_NEW_TOKENS, PROBE_PROMPT_TOKENS, probe_prompt  # noqa: E402
from rlaif_ray.weight_sync.format import wire_round_trip  # noqa: E402

SMOLLM2_DIR = REPO_ROOT / ".cache" / "smollm2-135m-instruct"
# (label, AdamW lr, steps): a realistic RLHF learning rate for a ~100M-1B policy is 1e-6..1e-5;
# 1e-4 is a large step, for contrast.
UPDATES = [("none", 0.0, 0), ("lr 1e-6 x4", 1e-6, 4), ("lr 1e-5 x4", 1e-5, 4), ("lr 1e-4 x4", 1e-4, 4)]
STALE_TENSOR = "model.layers.15.mlp.down_proj.weight"
SCENARIOS = ("correct", "not synced", "stale prefix", "stale tensor", "head not named")
UPDATE_TEXTS = [
    "<|im_start|>user\nName a fruit.<|im_end|>\n<|im_start|>assistant\nA pear is a sweet fruit.<|im_end|>\n",
    "<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\nHello! How can I help you today?<|im_end|>\n",
]


def updated_weights(model_dir: Path, lr: float, steps: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """fp32 weights after `steps` AdamW steps at `lr` on a fixed LM loss (the initial weights
    when steps == 0)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if steps:
        tok = AutoTokenizer.from_pretrained(model_dir)
        batch = tok(UPDATE_TEXTS, return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        model.train()
        for _ in range(steps):
            loss = model(**batch, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def send(llm, weights: dict[str, torch.Tensor], dtype: torch.dtype, reset_prefix_cache: bool = True,
         stale: dict[str, torch.Tensor] | None = None, tied_head: bool = True) -> None:
    """Weights → buckets → live engine, as the object-store sync does (without Ray).

    `tied_head=False` loads them as the sync did before the tied head was named explicitly
    (straight into vLLM's `reload_weights`, no `lm_head.weight`)."""
    from rlaif_ray.weight_sync.ends import load_into_engine

    named = [(n, (stale or {}).get(n, t).to(dtype)) for n, t in weights.items()]
    tensors = wire_round_trip(named, 64 * 2**20)
    if tied_head:
        load_into_engine(llm, tensors, reset_prefix_cache)
        return
    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(tensors), "is_checkpoint_format": True})
    llm.reset_prefix_cache()


def set_learner(model, weights: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(weights[n].to(p.dtype))


def probe_readings(llm, model, prompt: list[int], seeds: list[int]) -> list[float]:
    """The product's probe, once per sampling seed: max |engine − learner| logprob."""
    from rlaif_ray.weight_sync.probe import engine_sample, learner_logprobs

    out = []
    for seed in seeds:
        tokens, engine_logp = engine_sample(llm, prompt, PROBE_NEW_TOKENS, seed)
        learner_logp = learner_logprobs(model, prompt, tokens)
        out.append(float(np.max(np.abs(np.asarray(engine_logp) - np.asarray(learner_logp)))))
    return out


def measure_dtype(dtype_name: str, weights: dict[str, dict[str, torch.Tensor]], seeds: list[int]) -> list[dict]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from actors.engine import build_llm
    from rlaif_ray.config import ModelSection

    dtype = getattr(torch, dtype_name)
    tok = AutoTokenizer.from_pretrained(SMOLLM2_DIR)
    prompt = probe_prompt(tok)
    model = AutoModelForCausalLM.from_pretrained(SMOLLM2_DIR, dtype=dtype).eval()
    llm = build_llm(str(SMOLLM2_DIR), ModelSection(policy=str(SMOLLM2_DIR), labeler=str(SMOLLM2_DIR), dtype=dtype_name),
                    kv_cache_mib=256, gpu_memory_utilization=0.5, seed=0,
                    max_model_len=PROBE_PROMPT_TOKENS + PROBE_NEW_TOKENS + 16)
    w0 = weights["none"]
    rows = []
    for label, _lr, _steps in UPDATES:
        w1 = weights[label]
        set_learner(model, w0)
        send(llm, w0, dtype)
        probe_readings(llm, model, prompt, seeds[:1])  # the prompt's KV, old weights, now cached
        set_learner(model, w1)
        read = {"not synced": probe_readings(llm, model, prompt, seeds)}
        send(llm, w1, dtype, reset_prefix_cache=False)
        read["stale prefix"] = probe_readings(llm, model, prompt, seeds)
        send(llm, w1, dtype)
        read["correct"] = probe_readings(llm, model, prompt, seeds)
        send(llm, w1, dtype, stale={STALE_TENSOR: w0[STALE_TENSOR]})
        read["stale tensor"] = probe_readings(llm, model, prompt, seeds)
        send(llm, w0, dtype)  # back to the old weights, head included, then the old path
        send(llm, w1, dtype, tied_head=False)
        read["head not named"] = probe_readings(llm, model, prompt, seeds)
        moved = max(float((w1[n].to(dtype).float() - w0[n].to(dtype).float()).abs().max()) for n in w0)
        bf_changed = float(np.mean([float((w1[n].to(dtype) != w0[n].to(dtype)).float().mean()) for n in w0]))
        rows.append({"dtype": dtype_name, "update": label, "max_weight_change": moved,
                     "frac_weights_changed": bf_changed,
                     **{s: {"max": max(read[s]), "min": min(read[s]), "all": read[s]} for s in SCENARIOS}})
        print(f"  {dtype_name} {label}: " + ", ".join(f"{s} {max(read[s]):.1e}" for s in SCENARIOS),
              file=sys.stderr, flush=True)
    del llm, model
    gc.collect()
    return rows


def format_table(rows: list[dict]) -> str:
    head = ["dtype", "update", "max |Δw|", "weights changed"] + [f"{s} (max; min)" for s in SCENARIOS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["dtype"], r["update"], f"{r['max_weight_change']:.1e}", f"{100 * r['frac_weights_changed']:.0f}%"]
        cells += [f"{r[s]['max']:.1e}; {r[s]['min']:.1e}" for s in SCENARIOS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.probe_bounds", description=__doc__.split("\n")[0])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    ap.add_argument("--seeds", type=int, default=5, help="probe sampling seeds per reading (0..N-1)")
    ap.add_argument("--json", type=Path, default=None, help="also write every reading here")
    args = ap.parse_args(argv)

    from fixtures.smollm2 import ensure_smollm2

    ensure_smollm2(SMOLLM2_DIR)
    start = time.perf_counter()
    weights = {label: updated_weights(SMOLLM2_DIR, lr, steps) for label, lr, steps in UPDATES}
    rows = [r for d in args.dtypes for r in measure_dtype(d, weights, list(range(args.seeds)))]
    machine = machine_info()
    print(f"probe readings on SmolLM2-135M-Instruct, vLLM {__import__('vllm').__version__} (CPU, eager) vs "
          f"transformers {__import__('transformers').__version__}; {PROBE_NEW_TOKENS} sampled tokens after a "
          f"{PROBE_PROMPT_TOKENS}-token prompt, seeds 0..{args.seeds - 1}; stale tensor: {STALE_TENSOR}")
    print(f"machine: {machine['cpu']}, {machine['nproc']} cores, {machine['ram_gib']} GiB, {machine['os']}; "
          f"{time.perf_counter() - start:.0f} s")
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
