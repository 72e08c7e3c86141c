"""The two tiny Llamas and how they are trained: shapes, plans, the loss and the loop.

Both models are trained the same way: AdamW with linear warmup and cosine decay to 10%,
cross-entropy on the target tokens only (the response for the policy, the answer for the
labeler), batches drawn from a seeded shuffle. The initial weights come from
``torch.manual_seed`` right before each model is created, so their order of creation is
part of the build's determinism (``toy.models.build``).
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from toy.models.tokenizer import MAX_POSITIONS, check_tokenizer_reload


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


def log(quiet: bool, msg: str) -> None:
    """A ``[tiny-models]`` progress line on stderr, unless ``quiet``."""
    if not quiet:
        print(f"[tiny-models] {msg}", file=sys.stderr, flush=True)


def new_llama(shape: LlamaShape, vocab_size: int, seed: int):
    """A freshly initialised fp32 ``LlamaForCausalLM`` (weights drawn after manual_seed(seed))."""
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


def encode_examples(tokenizer, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], int]]:
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


def train_model(model, examples, plan: TrainPlan, seed: int, name: str, quiet: bool) -> float:
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
            log(quiet, f"  {name} step {step + 1}/{plan.steps} loss {sum(recent) / len(recent):.3f}"
                       f" ({time.perf_counter() - t0:.0f}s)")
    model.eval()
    return sum(recent) / len(recent)


def save_model(model, tokenizer, folder: Path) -> None:
    """Weights, an explicit generation config and the tokenizer into a new ``folder``."""
    from transformers import GenerationConfig

    folder.mkdir(parents=True)
    model.save_pretrained(folder)
    # Explicit generation config: vLLM reads it for default sampling params, so it must say
    # nothing beyond the special ids (no hidden temperature/top-k defaults).
    GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    check_tokenizer_reload(folder, tokenizer)
