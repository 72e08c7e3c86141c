"""Preference pairs for reward-model training and DPO (no Ray): read, label, split, tokenize,
batch, and the two losses on a model.

Rows (the `rlaif-ray label` output, or any file with these columns): context, response_a,
response_b, and p_a (the AI labeler's P(A preferred), position-debiased) and/or human_choice
(index of the preferred response: 0 = A, 1 = B, None = unlabeled). Targets, by `labels`:

    soft:   t = p_a                         loss −[t·log σ(h) + (1−t)·log σ(−h)]  (distilled RLAIF)
    hard:   chosen = A if p_a > 0.5 else B  loss −log σ(h − m)  (Bradley–Terry; p_a = 0.5 dropped)
    human:  chosen = A if human_choice = 0  loss −log σ(h − m)  (None dropped)

with h = r_A − r_B (reward model) or the DPO implicit-reward gap. Hard and human pairs are
stored chosen-first, so the losses see "A chosen" (target None) and can take a margin m.

Text the reward model reads: ``rm_text(prompt, response)`` = "prompt\\nresponse", the same
in training and when a `reward_model` source scores PPO samples (actors/reward_model.py).
DPO reads the prompt's ids (with the tokenizer's special tokens) followed by the response's
own ids and eos, tokenized separately, the way a generation engine produced them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from rlaif_ray.algorithms import dpo_loss, pairwise_reward_loss
from rlaif_ray.batch import build_shard
from rlaif_ray.data import DataError

TEXT_COLUMNS = ("context", "response_a", "response_b")
RM_TEMPLATE = "{prompt}\n{response}"


def rm_text(prompt: str, response: str) -> str:
    """What a reward model scores: RM_TEMPLATE = "{prompt}\\n{response}"."""
    return RM_TEMPLATE.format(prompt=prompt, response=response)


# --------------------------------------------------------------------------- reading and labels


def read_pair_rows(path: str, field: str) -> list[dict]:
    """Rows of a folder of *.parquet shards, a .parquet file, or a .jsonl/.json file."""
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.parquet"))
        if not files:
            raise DataError(f"{field}: {path}: the folder holds no *.parquet shards")
    elif p.is_file() and p.suffix in (".parquet", ".jsonl", ".json"):
        files = [p]
    elif p.exists():
        raise DataError(f"{field}: {path}: expected a .parquet/.jsonl/.json file or a folder of Parquet shards")
    else:
        raise DataError(f"{field}: {path}: no such file or directory")
    rows: list[dict] = []
    for f in files:
        if f.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows.extend(pq.read_table(f).to_pylist())
            continue
        text = f.read_text(encoding="utf-8")
        if f.suffix == ".json" and text.lstrip().startswith("["):
            rows.extend(json.loads(text))
            continue
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f"{field}: {f} line {n}: not valid JSON ({err})") from None
    if not rows:
        raise DataError(f"{field}: {path} holds no pairs")
    return rows


@dataclass
class Pairs:
    """N preference pairs, oriented for the loss: A is the chosen response unless soft."""

    prompts: list[str]          # (N,)
    responses_a: list[str]      # (N,) chosen (hard/human) or the data's A (soft)
    responses_b: list[str]      # (N,)
    target_a: np.ndarray | None  # (N,) float32 P(A preferred) for soft labels; None: A chosen
    rows: np.ndarray            # (N,) int64 index of each pair's record in the data

    def __len__(self) -> int:
        return len(self.prompts)

    def select(self, idx) -> "Pairs":
        idx = np.asarray(idx, dtype=np.int64)
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v if v is None else (v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx])
        return Pairs(**out)


def make_pairs(records: list[dict], labels: str, field: str) -> tuple[Pairs, dict]:
    """Validate the records and build oriented pairs; returns (pairs, {"pairs/records", "pairs/dropped"})."""
    label_col = "human_choice" if labels == "human" else "p_a"
    prompts, a_side, b_side, targets, kept = [], [], [], [], []
    for i, r in enumerate(records):
        where = f"{field}: record {i}"
        for col in TEXT_COLUMNS:
            if not isinstance(r.get(col), str):
                got = "missing" if col not in r else type(r[col]).__name__
                raise DataError(f"{where}: column {col!r} must be text ({got}; columns: {', '.join(map(str, r))})")
        if label_col not in r:
            raise DataError(f"{where}: labels {labels} need column {label_col!r} (columns: {', '.join(map(str, r))})")
        value = r[label_col]
        if labels == "human":
            if value is None:
                continue
            if value not in (0, 1):
                raise DataError(f"{where}: human_choice must be 0 (A), 1 (B) or null, got {value!r}")
            a_first = value == 0
        else:
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 1:
                raise DataError(f"{where}: p_a must be a probability in [0, 1], got {value!r}")
            if labels == "hard" and value == 0.5:
                continue
            a_first = labels == "soft" or value > 0.5
        chosen, other = (r["response_a"], r["response_b"]) if a_first else (r["response_b"], r["response_a"])
        prompts.append(r["context"])
        a_side.append(chosen)
        b_side.append(other)
        targets.append(float(value))
        kept.append(i)
    if not kept:
        raise DataError(f"{field}: no usable pairs with labels {labels} ({len(records)} records, all unlabeled or tied)")
    target = np.asarray(targets, dtype=np.float32) if labels == "soft" else None
    pairs = Pairs(prompts, a_side, b_side, target, np.asarray(kept, dtype=np.int64))
    return pairs, {"pairs/records": len(records), "pairs/dropped": len(records) - len(kept)}


def split_eval(n: int, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, eval) index split; eval holds round(n·f) pairs, at least 1 when f > 0."""
    order = np.random.default_rng([seed, 5501]).permutation(n)
    n_eval = max(1, round(n * eval_fraction)) if eval_fraction > 0 else 0
    if n - n_eval < 1:
        raise DataError(f"eval_fraction: {eval_fraction} of {n} pairs leaves none to train on")
    return np.sort(order[n_eval:]), np.sort(order[:n_eval])


# --------------------------------------------------------------------------- batching


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int, world: int) -> list[np.ndarray]:
    """This rank's rows of every optimiser step of one epoch.

    The same permutation on every rank (seeded by seed and epoch); a step's `batch_size` rows
    are split into `world` equal slices, so DeepSpeed's gradient average is the average over
    the whole batch. The last incomplete batch is dropped (a new order each epoch).
    """
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    per_rank = batch_size // world
    steps = n // batch_size
    return [np.sort(perm[s * batch_size + rank * per_rank: s * batch_size + (rank + 1) * per_rank])
            for s in range(steps)]


def rank_rows(n: int, rank: int, world: int) -> np.ndarray:
    """A contiguous share of n rows for this rank (evaluation, reference logprobs)."""
    return np.array_split(np.arange(n), world)[rank]


def pad_right(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention_mask), both (B, L) int64, right-padded with pad_id."""
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        attn[i, : len(s)] = 1
    return ids, attn


def merge_weighted(parts: list[dict]) -> dict:
    """Combine per-rank means {"n": rows, key: mean, ...} into means over all rows."""
    total = sum(p["n"] for p in parts)
    keys = [k for k in parts[0] if k != "n"]
    return {k: sum(p[k] * p["n"] for p in parts if p["n"]) / total for k in keys} if total else {}


# --------------------------------------------------------------------------- tokenization


def encode_rm(tokenizer, prompts: list[str], responses: list[str], max_tokens: int) -> tuple[list[list[int]], int]:
    """Token ids of rm_text(prompt, response) (the tokenizer's special tokens kept); over
    max_tokens, the start is cut (truncation_side left). Returns (ids, n_truncated)."""
    texts = [rm_text(p, r) for p, r in zip(prompts, responses)]
    ids = tokenizer(texts)["input_ids"]
    long = [i for i, x in enumerate(ids) if len(x) > max_tokens]
    if long:
        side, tokenizer.truncation_side = tokenizer.truncation_side, "left"
        try:
            cut = tokenizer([texts[i] for i in long], truncation=True, max_length=max_tokens)["input_ids"]
        finally:
            tokenizer.truncation_side = side
        for i, x in zip(long, cut):
            ids[i] = x
    return ids, len(long)


def encode_dpo(formatter, prompts: list, responses: list[str], max_tokens: int):
    """(prompt_ids, response_ids, n_truncated): the prompt formatted as the policy sees it in
    training (`rlaif_ray.prompts.PromptFormatter`: special tokens, chat template), then the
    response's own ids and eos.

    Over max_tokens the response keeps what it can while the prompt keeps its template (or
    bos) and one token of content (`formatter.floor`); the prompt is then shortened by the
    formatter into what is left.
    """
    tok = formatter.tokenizer
    r_ids = tok(list(responses), add_special_tokens=False)["input_ids"]
    eos = tok.eos_token_id
    out_p, out_r, truncated = [], [], 0
    for k, (prompt, r) in enumerate(zip(prompts, r_ids)):
        r = list(r) + ([eos] if eos is not None else [])
        p = formatter.encode(prompt, 1 << 30).token_ids
        if len(p) + len(r) > max_tokens:
            truncated += 1
            r = r[: max(max_tokens - formatter.floor(prompt), 1)]
            enc = formatter.encode(prompt, max_tokens - len(r))
            if enc is None:
                raise ValueError(f"pair {k}: the prompt's template alone is over max_tokens ({max_tokens})")
            p = enc.token_ids
        out_p.append(list(p))
        out_r.append(list(r))
    return out_p, out_r, truncated


# --------------------------------------------------------------------------- losses on a model


def rm_scores(model, seqs: list[list[int]], pad_id: int) -> torch.Tensor:
    """(B,) float32 scalar scores: the sequence-classification head at the last real token."""
    device = next(model.parameters()).device
    ids, attn = pad_right(seqs, pad_id)
    return model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits[:, 0].float()


def rm_pair_loss(model, seqs_a, seqs_b, pad_id: int, target_a: np.ndarray | None, margin: float | None):
    """One forward over the 2N sequences, then `pairwise_reward_loss` (soft CE or Bradley–Terry)."""
    scores = rm_scores(model, list(seqs_a) + list(seqs_b), pad_id)
    n = len(seqs_a)
    t = None if target_a is None else torch.as_tensor(target_a, device=scores.device)
    return pairwise_reward_loss(scores[:n], scores[n:], t, margin)


def sequence_logprobs(model, prompt_ids: list[list[int]], response_ids: list[list[int]]) -> torch.Tensor:
    """(N,) Σ_t log π(response_t | prompt, response_<t) at temperature 1."""
    from rlaif_ray.modeling import response_logprobs

    n = len(prompt_ids)
    width = max(len(r) for r in response_ids)
    batch = build_shard(prompt_ids, response_ids, [[]] * n, [0] * n, [0] * n, [""] * n, [""] * n, width, -1)
    return response_logprobs(model, batch).sum(-1)


def dpo_pair_loss(model, prompt_a, resp_a, prompt_b, resp_b, ref_a: np.ndarray, ref_b: np.ndarray, beta: float,
                  target_a: np.ndarray | None):
    """One forward over both sides of N pairs, then `dpo_loss` against the stored reference
    logprobs ref_a, ref_b (N,). Prompt ids are per side: truncation may cut them differently."""
    logp = sequence_logprobs(model, list(prompt_a) + list(prompt_b), list(resp_a) + list(resp_b))
    n = len(prompt_a)
    dev = logp.device
    t = None if target_a is None else torch.as_tensor(target_a, device=dev)
    return dpo_loss(logp[:n], logp[n:], torch.as_tensor(ref_a, device=dev), torch.as_tensor(ref_b, device=dev), beta, t)
