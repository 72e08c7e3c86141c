"""Build the tiny offline models the CPU stack runs on (no model hub exists here).

``build_tiny_models(out_dir, seed)`` writes, deterministically from ``seed``:

    out_dir/
      policy/           LlamaForCausalLM, 0.6M params, SFT'd on the toy task (rlaif_ray.toy_task)
      labeler/          3.2M-param LlamaForCausalLM trained to grade toy responses like the rule
      reward_backbone/  a copy of the SFT policy, the backbone for reward-model training
      build_report.json what was built and how good it is (labeler correlation, ...)
      .complete         hash of the builder's inputs; written last

Every model folder also holds the same byte-level BPE tokenizer (``<pad>`` 0, ``<s>`` 1,
``</s>`` 2; encoding prepends ``<s>``) in HF format, so each folder loads with plain
``AutoTokenizer`` / ``AutoModelForCausalLM.from_pretrained(folder)`` and with vLLM.

Shapes are Llama with head_dim 64, because vLLM on CPU only supports head_dim 64 or 128.

Formats the models were trained on (what callers must feed them):

- policy: ``<s>`` + prompt + response + ``</s>``, the response starting with a space
  (``"Tell me about the sea." → " The sea is warm and grey."``). Feed the raw prompt.
- labeler: ``<s>`` + ``build_direct_prompt(prompt, response)`` + candidate + ``</s>`` with
  the candidate ``" 1"``..``" 10"`` = ``rule_label(response)``; and (a quarter of the data)
  ``build_pairwise_prompt(prompt, a, b)`` + ``"1"``/``"2"`` (the rule's preference). Base
  preamble, generic task, no exemplars. Responses were shown both stripped and with the
  policy's leading space, so either works.

``ensure_tiny_models`` is the cached entry point: it returns at once when ``.complete``
matches, otherwise builds under a file lock into a temp dir and renames it into place, so
concurrent test processes never see a half-written folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from rlaif_ray import toy_task
from rlaif_ray.cached_build import build_into_place, file_lock
from rlaif_ray.labeler import (
    PREAMBLES,
    TASKS,
    build_cot_prompt,
    build_direct_prompt,
    build_pairwise_prompt,
    candidate_probs,
    direct_candidate_strings,
    expected_score,
    pairwise_candidate_strings,
    plan_candidate_queries,
    preference_from_swapped,
)

__all__ = [
    "MODEL_NAMES",
    "LlamaShape",
    "build_tiny_models",
    "ensure_tiny_models",
    "inputs_hash",
    "labeler_candidate_probs",
    "train_tokenizer",
    "tokenizer_corpus",
    "main_make_tiny_models",
]

BUILD_FORMAT = 1
"""Bump to force every cache to rebuild when the folder layout changes."""
MODEL_NAMES = ("policy", "labeler", "reward_backbone")
COMPLETE_FILE = ".complete"
REPORT_FILE = "build_report.json"
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>")  # ids 0, 1, 2 in this order
VOCAB_SIZE = 1536
MAX_POSITIONS = 512


@dataclass(frozen=True)
class LlamaShape:
    """A Llama shape. head_dim is fixed at 64 (vLLM-CPU supports 64 or 128 only)."""

    hidden_size: int
    """Model width; = num_heads · 64."""
    num_layers: int
    """Decoder blocks."""
    intermediate_size: int
    """SwiGLU inner width."""

    @property
    def num_heads(self) -> int:
        return self.hidden_size // 64


POLICY_SHAPE = LlamaShape(hidden_size=128, num_layers=2, intermediate_size=256)
LABELER_SHAPE = LlamaShape(hidden_size=256, num_layers=4, intermediate_size=512)


@dataclass(frozen=True)
class TrainPlan:
    """One training phase's optimisation settings."""

    steps: int
    """Optimiser steps."""
    batch_size: int
    """Sequences per step."""
    lr: float
    """Peak AdamW learning rate (linear warmup, cosine decay to 10%)."""
    warmup: int = 20
    """Warmup steps."""


POLICY_PLAN = TrainPlan(steps=350, batch_size=32, lr=3e-3)
LABELER_PLAN = TrainPlan(steps=400, batch_size=32, lr=2e-3, warmup=30)
N_SFT_PAIRS = 6000
N_LABELER_EXAMPLES = 12800  # = steps · batch: one pass, no example seen twice
PAIRWISE_SHARE = 0.25
N_EVAL_DIRECT = 300
N_EVAL_PAIRS = 200
N_POLICY_SAMPLES = 256


def _log(quiet: bool, msg: str) -> None:
    if not quiet:
        print(f"[tiny-models] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------ tokenizer


def _labeler_examples(n: int, seed: int, split: toy_task.Split) -> list[tuple[str, str]]:
    """``n`` (labeler prompt, answer string) pairs over the whole score range.

    Direct: answer = " <rule_label>"; pairwise (PAIRWISE_SHARE of them): answer = "1"/"2"
    for the response the rule prefers (ties are redrawn).
    """
    rng = random.Random(f"toy-labeler/{seed}/{split}")
    prompts = toy_task.toy_prompts(n, seed + 1000, split)
    direct_cands = direct_candidate_strings()
    pair_cands = pairwise_candidate_strings()
    out = []
    for prompt in prompts:
        if rng.random() < PAIRWISE_SHARE:
            while True:
                a = toy_task.labeler_response(prompt, rng)
                b = toy_task.labeler_response(prompt, rng)
                sa, sb = toy_task.rule_score(a), toy_task.rule_score(b)
                if sa != sb:
                    break
            a, b = _maybe_lead_space(a, rng), _maybe_lead_space(b, rng)
            out.append((build_pairwise_prompt(prompt, a, b), pair_cands[0 if sa > sb else 1]))
        else:
            r = toy_task.labeler_response(prompt, rng)
            label = toy_task.rule_label(r)
            out.append((build_direct_prompt(prompt, _maybe_lead_space(r, rng)),
                        direct_cands[label - 1]))
    return out


def _maybe_lead_space(response: str, rng: random.Random) -> str:
    # The policy emits responses with a leading space; the labeler sees both forms.
    return " " + response if response and rng.random() < 0.5 else response


def tokenizer_corpus(seed: int = 0) -> list[str]:
    """The texts the BPE tokenizer is trained on: SFT pairs and labeler prompts+answers."""
    texts = [p + " " + r for p, r in toy_task.sft_pairs(2000, seed)]
    texts += [q + a for q, a in _labeler_examples(2000, seed, "train")]
    # Every task's and preamble's template (a few times each, so BPE merges their words):
    # prompts for other tasks, detailed preambles and chain of thought stay compact.
    for task in TASKS:
        for preamble in PREAMBLES:
            texts += [build_direct_prompt("x", "y", task=task, preamble=preamble),
                      build_pairwise_prompt("x", "y", "z", task=task, preamble=preamble),
                      build_cot_prompt("x", "y", task=task, preamble=preamble),
                      build_cot_prompt("x", "y", "z", kind="pairwise", task=task,
                                       preamble=preamble)] * 5
    texts += [c for c in direct_candidate_strings() for _ in range(50)]
    return texts


def train_tokenizer(seed: int = 0, vocab_size: int = VOCAB_SIZE):
    """A byte-level BPE ``PreTrainedTokenizerFast`` (bos prepended) trained on the corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tokenizer_corpus(seed), trainer=trainer)
    bos = SPECIAL_TOKENS[1]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
        special_tokens=[(bos, tok.token_to_id(bos))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=SPECIAL_TOKENS[0], bos_token=SPECIAL_TOKENS[1], eos_token=SPECIAL_TOKENS[2],
        model_max_length=MAX_POSITIONS,
    )


def _check_tokenizer_reload(folder: Path, tokenizer) -> None:
    """AutoTokenizer must reload the saved tokenizer and split text exactly the same."""
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(folder)
    sample = build_direct_prompt("Tell me about the sea.", " The sea is warm and grey.") + " 10"
    a, b = tokenizer(sample)["input_ids"], again(sample)["input_ids"]
    if a != b or again.decode(b, skip_special_tokens=True) != sample:
        raise RuntimeError(
            f"tokenizer in {folder} reloads as {type(again).__name__} and encodes differently"
        )


# --------------------------------------------------------------------------- models


def _llama(shape: LlamaShape, vocab_size: int, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_heads,
        head_dim=64,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=False,
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
        dtype="float32",
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def _encode_examples(tokenizer, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], int]]:
    """(context, target) → (ids = <s> context target </s>, n_target = len(target ids)+1).

    Context and target are tokenized separately (the target's ids are what an engine will
    score after the context), then joined.
    """
    ctx = tokenizer([c for c, _ in pairs])["input_ids"]
    tgt = tokenizer([t for _, t in pairs], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return [(c + t + [eos], len(t) + 1) for c, t in zip(ctx, tgt)]


def _batches(examples, plan: TrainPlan, rng: random.Random) -> Iterator[list]:
    """``plan.steps`` batches of B examples, reshuffled every epoch.

    (Length-bucketing would save ~25% padding, direct and pairwise prompts differing by
    ~20 tokens, but it makes batches homogeneous; in the one comparison made the labeler
    came out worse: Pearson 0.80 vs 0.89 after 250 steps.)
    """
    order: list[int] = []
    for _ in range(plan.steps):
        if len(order) < plan.batch_size:
            fresh = list(range(len(examples)))
            rng.shuffle(fresh)
            order += fresh
        yield [examples[i] for i in order[: plan.batch_size]]
        del order[: plan.batch_size]


def _target_loss(model, batch: list[tuple[list[int], int]]) -> torch.Tensor:
    """Mean cross-entropy over the target tokens of each sequence (the last n_target).

    The LM head runs only at the positions that predict a target token: for the labeler
    that is 2 of ~40 positions, which is most of the saving on a CPU.
    """
    T = max(len(ids) for ids, _ in batch)
    ids = torch.zeros(len(batch), T, dtype=torch.long)  # (B, T) right-padded with <pad>=0
    attn = torch.zeros(len(batch), T, dtype=torch.long)  # (B, T) 1 on real tokens
    rows, cols, targets = [], [], []
    for b, (seq, n_tgt) in enumerate(batch):
        ids[b, : len(seq)] = torch.tensor(seq)
        attn[b, : len(seq)] = 1
        for pos in range(len(seq) - n_tgt, len(seq)):
            rows.append(b)
            cols.append(pos - 1)  # the position whose logits predict token `pos`
            targets.append(seq[pos])
    hidden = model.model(input_ids=ids, attention_mask=attn).last_hidden_state  # (B, T, H)
    logits = model.lm_head(hidden[rows, cols])  # (N_targets, V)
    return torch.nn.functional.cross_entropy(logits, torch.tensor(targets))


def _train(model, examples, plan: TrainPlan, seed: int, name: str, quiet: bool) -> float:
    """AdamW with warmup + cosine decay; returns the mean loss of the last 20 steps."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=0.01, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < plan.warmup:
            return (step + 1) / plan.warmup
        t = (step - plan.warmup) / max(plan.steps - plan.warmup, 1)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    rng = random.Random(f"batches/{name}/{seed}")
    recent: list[float] = []
    t0 = time.perf_counter()
    for step, batch in enumerate(_batches(examples, plan, rng)):
        loss = _target_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        recent = (recent + [loss.item()])[-20:]
        if not quiet and (step + 1) % max(plan.steps // 5, 1) == 0:
            _log(quiet, f"  {name} step {step + 1}/{plan.steps} loss {sum(recent) / len(recent):.3f}"
                        f" ({time.perf_counter() - t0:.0f}s)")
    model.eval()
    return sum(recent) / len(recent)


def _save(model, tokenizer, folder: Path) -> None:
    from transformers import GenerationConfig

    folder.mkdir(parents=True)
    model.save_pretrained(folder)
    # Explicit generation config: vLLM reads it for default sampling params, so it must say
    # nothing beyond the special ids (no hidden temperature/top-k defaults).
    GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _check_tokenizer_reload(folder, tokenizer)


# ------------------------------------------------------------------------ evaluation


@torch.no_grad()
def _next_token_logprobs(model, tokenizer, texts_and_prefixes, batch_size=64):
    """log_softmax of the next-token logits after ``<s> text + prefix ids``: (N, V)."""
    out = []
    for i in range(0, len(texts_and_prefixes), batch_size):
        chunk = texts_and_prefixes[i: i + batch_size]
        seqs = [tokenizer(t)["input_ids"] + list(p) for t, p in chunk]
        T = max(map(len, seqs))
        ids = torch.zeros(len(seqs), T, dtype=torch.long)
        attn = torch.zeros(len(seqs), T, dtype=torch.long)
        for b, s in enumerate(seqs):
            ids[b, : len(s)] = torch.tensor(s)
            attn[b, : len(s)] = 1
        hidden = model.model(input_ids=ids, attention_mask=attn).last_hidden_state
        last = hidden[torch.arange(len(seqs)), attn.sum(1) - 1]
        out.append(torch.log_softmax(model.lm_head(last).float(), dim=-1))
    return torch.cat(out)


def labeler_candidate_probs(model, tokenizer, prompts: Sequence[str],
                            candidates: Sequence[str]) -> torch.Tensor:
    """(N, C) renormalised P(candidate | prompt), candidates scored exactly (chain rule,
    prefix-corrected) with ``rlaif_ray.labeler`` — the same math the labeler actor uses."""
    cand_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in candidates]
    plan = plan_candidate_queries(cand_ids)
    queries = [(p, prefix) for p in prompts for prefix in plan]
    logp = _next_token_logprobs(model, tokenizer, queries)
    rows = []
    for i in range(len(prompts)):
        answers = {prefix: {t: logp[i * len(plan) + j, t].item() for t in plan[prefix]}
                   for j, prefix in enumerate(plan)}
        rows.append(candidate_probs(cand_ids, answers))
    return torch.stack(rows)


def _pearson(x: Sequence[float], y: Sequence[float]) -> float:
    xt, yt = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    xt, yt = xt - xt.mean(), yt - yt.mean()
    return float((xt * yt).sum() / (xt.norm() * yt.norm()).clamp(min=1e-12))


def _eval_labeler(model, tokenizer, seed: int) -> dict:
    """Held-out agreement with the rule: Pearson(E[score], rule_score) and pairwise accuracy."""
    rng = random.Random(f"toy-labeler-eval/{seed}")
    prompts = toy_task.toy_prompts(N_EVAL_DIRECT, seed + 2000, "heldout")
    responses = [toy_task.labeler_response(p, rng) for p in prompts]
    probs = labeler_candidate_probs(
        model, tokenizer, [build_direct_prompt(p, r) for p, r in zip(prompts, responses)],
        direct_candidate_strings())
    s = expected_score(probs).tolist()
    rule = [toy_task.rule_score(r) for r in responses]

    pairs = []
    for p in toy_task.toy_prompts(N_EVAL_PAIRS, seed + 3000, "heldout"):
        while True:
            a, b = toy_task.labeler_response(p, rng), toy_task.labeler_response(p, rng)
            if toy_task.rule_score(a) != toy_task.rule_score(b):
                break
        pairs.append((p, a, b))
    both = labeler_candidate_probs(
        model, tokenizer,
        [build_pairwise_prompt(p, a, b) for p, a, b in pairs]
        + [build_pairwise_prompt(p, b, a) for p, a, b in pairs],
        pairwise_candidate_strings())[:, 0]
    p_ab, p_ba = both[: len(pairs)], both[len(pairs):]  # P("1") in each order
    a_wins = [toy_task.rule_score(a) > toy_task.rule_score(b) for _, a, b in pairs]

    def accuracy(p_a: torch.Tensor) -> float:
        return round(sum((float(q) > 0.5) == w for q, w in zip(p_a, a_wins)) / len(pairs), 4)

    return {
        "labeler_pearson_heldout": round(_pearson(s, rule), 4),
        # one order (A shown first), and both orders averaged (what the labeler actor does)
        "labeler_pairwise_accuracy_heldout": accuracy(p_ab),
        "labeler_pairwise_accuracy_debiased_heldout": accuracy(
            preference_from_swapped(p_ab, p_ba)),
        "n_eval_direct": len(s),
        "n_eval_pairs": len(pairs),
    }


@torch.no_grad()
def _sample_policy(model, tokenizer, prompts: Sequence[str],
                   seed: int) -> tuple[list[str], list[bool]]:
    """Temperature-1 samples (max 40 new tokens) decoded without special tokens, and
    whether each ended with </s>."""
    torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True)
    tokenizer.padding_side = "right"
    gen = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                         max_new_tokens=40, pad_token_id=0, eos_token_id=2)
    new = gen[:, enc["input_ids"].shape[1]:]
    ended = [(row == 2).any().item() for row in new]
    return tokenizer.batch_decode(new, skip_special_tokens=True), ended


def _eval_policy(policy, labeler, tokenizer, seed: int) -> dict:
    """What RL starts from: the SFT policy's rule score and the labeler's view of it."""
    prompts = toy_task.toy_prompts(N_POLICY_SAMPLES, seed + 4000, "train")
    responses, ended = _sample_policy(policy, tokenizer, prompts, seed)
    rule = [toy_task.rule_score(r) for r in responses]
    probs = labeler_candidate_probs(
        labeler, tokenizer, [build_direct_prompt(p, r) for p, r in zip(prompts, responses)],
        direct_candidate_strings())
    s = expected_score(probs).tolist()
    mean = sum(rule) / len(rule)
    return {
        "policy_mean_rule_score": round(mean, 4),
        "policy_std_rule_score": round((sum((x - mean) ** 2 for x in rule) / len(rule)) ** 0.5, 4),
        "policy_eos_rate": round(sum(ended) / len(ended), 4),
        "labeler_pearson_on_policy_samples": round(_pearson(s, rule), 4),
        "policy_samples": [p + " ->" + r for p, r in zip(prompts[:5], responses[:5])],
    }


# ---------------------------------------------------------------------------- build


def inputs_hash(seed: int) -> str:
    """Hash of everything the build depends on: seed, builder and toy-task sources, the
    labeler prompt format, library versions. ``.complete`` holds it."""
    import tokenizers
    import transformers

    h = hashlib.sha256()
    h.update(f"format={BUILD_FORMAT} seed={seed}".encode())
    for mod in (toy_task, sys.modules[__name__]):
        h.update(Path(mod.__file__).read_bytes())
    # The prompts themselves, not the labeler package's source: a cosmetic edit there
    # must not cost a rebuild, a changed template must.
    h.update(build_direct_prompt("C", "R").encode())
    h.update(build_pairwise_prompt("C", "A", "B").encode())
    h.update(repr((direct_candidate_strings(), pairwise_candidate_strings())).encode())
    h.update(f"{torch.__version__} {transformers.__version__} {tokenizers.__version__}".encode())
    return h.hexdigest()[:32]


def _paths(out_dir: Path) -> dict[str, Path]:
    paths = {name: out_dir / name for name in MODEL_NAMES}
    paths["root"] = out_dir
    paths["report"] = out_dir / REPORT_FILE
    return paths


# Torch threads of every build, whatever the machine or its load. Fixed, because the thread
# count changes the weights: a 1-thread and a 2-thread build differ (labeler held-out Pearson
# 0.9437 vs 0.9587), and a cache must mean one set of weights. 2: what a quiet 2-core
# machine (CI, the numbers in docs/) builds with. On a machine already busy, two OpenMP
# threads spin at every barrier and the build runs slower (up to ~60x per step at load 2+);
# build when the machine is quiet, once: the cache is then reused.
BUILD_THREADS = 2


def build_tiny_models(out_dir: str | Path, seed: int = 0, *, quiet: bool = False) -> dict[str, Path]:
    """Build the tokenizer and the three models into ``out_dir`` (must not exist or be
    empty); returns {"policy", "labeler", "reward_backbone", "root", "report"} → Path.

    About 2–3 minutes on 2 CPU cores. Deterministic from ``seed`` on a given machine and
    thread count. Prefer ``ensure_tiny_models``, which caches and locks.
    """
    from transformers.utils import logging as hf_logging

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty; build into a fresh folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    # Hashed before building, so the stamp describes the inputs this build started from.
    stamp = inputs_hash(seed)
    prev_threads = torch.get_num_threads()
    prev_verbosity = hf_logging.get_verbosity()
    prev_bars = hf_logging.is_progress_bar_enabled()
    threads = BUILD_THREADS
    torch.set_num_threads(threads)
    # Our own progress lines only: no per-save "Writing model shards" bars or warnings.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    timings: dict[str, float] = {}
    try:
        t = time.perf_counter()
        tokenizer = train_tokenizer(seed)
        timings["tokenizer_s"] = time.perf_counter() - t
        _log(quiet, f"tokenizer: {len(tokenizer)} tokens ({timings['tokenizer_s']:.1f}s)")

        t = time.perf_counter()
        policy = _llama(POLICY_SHAPE, len(tokenizer), seed)
        sft = _encode_examples(tokenizer, [(p, " " + r) for p, r in toy_task.sft_pairs(N_SFT_PAIRS, seed)])
        policy_loss = _train(policy, sft, POLICY_PLAN, seed, "policy", quiet)
        timings["policy_s"] = time.perf_counter() - t
        _log(quiet, f"policy SFT: loss {policy_loss:.3f} ({timings['policy_s']:.0f}s)")

        t = time.perf_counter()
        labeler = _llama(LABELER_SHAPE, len(tokenizer), seed + 1)
        data = _encode_examples(tokenizer, _labeler_examples(N_LABELER_EXAMPLES, seed, "train"))
        labeler_loss = _train(labeler, data, LABELER_PLAN, seed, "labeler", quiet)
        timings["labeler_s"] = time.perf_counter() - t
        _log(quiet, f"labeler: loss {labeler_loss:.3f} ({timings['labeler_s']:.0f}s)")

        t = time.perf_counter()
        report = {
            "seed": seed,
            "inputs_hash": stamp,
            "vocab_size": len(tokenizer),
            "candidate_token_counts": {
                c: len(tokenizer(c, add_special_tokens=False)["input_ids"])
                for c in direct_candidate_strings() + pairwise_candidate_strings()},
            "params": {"policy": sum(p.numel() for p in policy.parameters()),
                       "labeler": sum(p.numel() for p in labeler.parameters())},
            "shapes": {"policy": asdict(POLICY_SHAPE), "labeler": asdict(LABELER_SHAPE)},
            "final_loss": {"policy": round(policy_loss, 4), "labeler": round(labeler_loss, 4)},
        }
        report.update(_eval_labeler(labeler, tokenizer, seed))
        report.update(_eval_policy(policy, labeler, tokenizer, seed))
        timings["eval_s"] = time.perf_counter() - t
        _log(quiet, f"eval: labeler pearson {report['labeler_pearson_heldout']:.3f}, pairwise acc "
                    f"{report['labeler_pairwise_accuracy_heldout']:.3f}, policy mean rule score "
                    f"{report['policy_mean_rule_score']:+.3f} ({timings['eval_s']:.0f}s)")

        paths = _paths(out_dir)
        _save(policy, tokenizer, paths["policy"])
        _save(labeler, tokenizer, paths["labeler"])
        shutil.copytree(paths["policy"], paths["reward_backbone"])
        timings["total_s"] = time.perf_counter() - t_start
        report["timings"] = {k: round(v, 1) for k, v in timings.items()}
        report["torch_threads"] = threads
        paths["report"].write_text(json.dumps(report, indent=2) + "\n")
        # Last: a folder without this file is incomplete and gets rebuilt.
        (out_dir / COMPLETE_FILE).write_text(stamp + "\n")
        _log(quiet, f"built in {timings['total_s']:.0f}s")
        return paths
    finally:
        torch.set_num_threads(prev_threads)
        hf_logging.set_verbosity(prev_verbosity)
        if prev_bars:
            hf_logging.enable_progress_bar()


def _is_complete(out_dir: Path, want: str) -> bool:
    f = out_dir / COMPLETE_FILE
    return f.is_file() and f.read_text().strip() == want


def ensure_tiny_models(out_dir: str | Path, seed: int = 0, *, quiet: bool = False,
                       force: bool = False) -> dict[str, Path]:
    """The tiny models in ``out_dir``, built if missing, stale or incomplete.

    Fast path: ``out_dir/.complete`` matches ``inputs_hash(seed)`` → return the paths.
    Otherwise, holding an exclusive lock on ``out_dir.with_suffix('.lock')``: check again
    (another process may have just built it), build into a temp dir beside ``out_dir``,
    and rename it into place, so readers only ever see a complete folder.
    """
    out_dir = Path(out_dir).absolute()
    want = inputs_hash(seed)
    if not force and _is_complete(out_dir, want):
        return _paths(out_dir)
    with file_lock(out_dir.with_suffix(".lock")):
        if not force and _is_complete(out_dir, want):
            return _paths(out_dir)
        build_into_place(out_dir, lambda tmp: build_tiny_models(tmp, seed, quiet=quiet))
    return _paths(out_dir)


# ------------------------------------------------------------------------------ CLI


def main_make_tiny_models(argv: Sequence[str] | None = None) -> int:
    """``rlaif-ray make-tiny-models DIR [--seed N] [--force] [--quiet]``."""
    ap = argparse.ArgumentParser(
        prog="rlaif-ray make-tiny-models",
        description="Build the tiny offline policy/labeler/reward-backbone models (cached).")
    ap.add_argument("dir", type=Path, help="output folder, e.g. .cache/tiny-models")
    ap.add_argument("--seed", type=int, default=0, help="build seed (default 0)")
    ap.add_argument("--force", action="store_true", help="rebuild even if up to date")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)
    paths = ensure_tiny_models(args.dir, args.seed, quiet=args.quiet, force=args.force)
    report = json.loads(paths["report"].read_text())
    print(json.dumps({
        **{k: str(v) for k, v in paths.items()},
        **{k: report[k] for k in ("labeler_pearson_heldout", "labeler_pairwise_accuracy_heldout",
                                  "policy_mean_rule_score")},
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main_make_tiny_models())
