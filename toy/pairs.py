"""Toy preference pairs: two responses per toy prompt, the rule's preferred one recorded.

Each pair is a dict in the uniform preference-record shape of
`rlaif_ray.preference_data` plus the rule's scores:

    {"context": prompt, "response_a": a, "response_b": b,
     "human_choice": 0 if rule_score(a) > rule_score(b) else 1,
     "score_a": rule_score(a), "score_b": rule_score(b)}

``human_choice`` plays the part of the human label: the index of the response the toy
task's ground truth (`toy.task.rule_score`) prefers. Responses come from
`toy.task.labeler_response`, which covers the whole brightness range (policy-style
sentences with a random bright share, very bright ones, word mixes, degenerate answers);
pairs whose two rule scores are equal are redrawn, so every pair has a strict winner. This
is the distribution the tiny labeler's held-out pairwise accuracy (~0.76) was measured on.

Pure and seeded (`random.Random`, no global RNG): reused by the label job's tests, reward
model and DPO tests, and the evaluation.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from toy import task

MAX_REDRAWS = 1000
"""A pair whose scores still tie after this many redraws is a bug, not bad luck."""


def make_toy_pair(prompt: str, rng: random.Random) -> dict:
    """One pair for ``prompt`` with a strict rule winner (ties redrawn)."""
    for _ in range(MAX_REDRAWS):
        a = task.labeler_response(prompt, rng)
        b = task.labeler_response(prompt, rng)
        sa, sb = task.rule_score(a), task.rule_score(b)
        if sa != sb:
            return {"context": prompt, "response_a": a, "response_b": b,
                    "human_choice": 0 if sa > sb else 1, "score_a": sa, "score_b": sb}
    raise RuntimeError(f"no untied pair for {prompt!r} in {MAX_REDRAWS} draws")


def make_toy_pairs(n: int, seed: int = 0, split: task.Split = "train") -> list[dict]:
    """``n`` toy pairs over ``toy_prompts(n, seed, split)``; the same (n, seed, split) gives
    the same pairs, and the first k of n pairs equal ``make_toy_pairs(k, seed, split)``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(f"toy-pairs/{seed}/{split}")
    return [make_toy_pair(p, rng) for p in task.toy_prompts(n, seed, split)]


def write_toy_pairs_jsonl(path: str | Path, n: int, seed: int = 0,
                          split: task.Split = "train") -> Path:
    """Write ``make_toy_pairs(n, seed, split)`` as JSON lines (label.format generic); returns path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for pair in make_toy_pairs(n, seed, split):
            f.write(json.dumps(pair) + "\n")
    return path
