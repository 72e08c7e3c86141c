"""What the tiny models are trained on, as (context, target) texts.

- policy: (prompt, " " + response) over the toy task's SFT pairs;
- labeler: (labeler prompt, answer), the answer the rule's grade (direct) or its preferred
  response (pairwise, ``PAIRWISE_SHARE`` of the examples).

Both are pure functions of their seed (``random.Random`` streams named after what they
draw, no global RNG), so the tokenizer trained on these texts and the models are
reproducible.
"""

from __future__ import annotations

import random

from rlaif_ray.labeler import (
    build_direct_prompt,
    build_pairwise_prompt,
    direct_candidate_strings,
    pairwise_candidate_strings,
)
from toy import task

PAIRWISE_SHARE = 0.25
"""Share of the labeler's examples that are pairwise comparisons (the rest: direct grades)."""


def policy_examples(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` (prompt, response) SFT examples, the response with the policy's leading space."""
    return [(p, " " + r) for p, r in task.sft_pairs(n, seed)]


def labeler_examples(n: int, seed: int, split: task.Split) -> list[tuple[str, str]]:
    """``n`` (labeler prompt, answer string) pairs over the whole score range.

    Direct: answer = " <rule_label>"; pairwise (PAIRWISE_SHARE of them): answer = "1"/"2"
    for the response the rule prefers (ties are redrawn).
    """
    rng = random.Random(f"toy-labeler/{seed}/{split}")
    prompts = task.toy_prompts(n, seed + 1000, split)
    direct_cands = direct_candidate_strings()
    pair_cands = pairwise_candidate_strings()
    out = []
    for prompt in prompts:
        if rng.random() < PAIRWISE_SHARE:
            while True:
                a = task.labeler_response(prompt, rng)
                b = task.labeler_response(prompt, rng)
                sa, sb = task.rule_score(a), task.rule_score(b)
                if sa != sb:
                    break
            a, b = _maybe_lead_space(a, rng), _maybe_lead_space(b, rng)
            out.append((build_pairwise_prompt(prompt, a, b), pair_cands[0 if sa > sb else 1]))
        else:
            r = task.labeler_response(prompt, rng)
            label = task.rule_label(r)
            out.append((build_direct_prompt(prompt, _maybe_lead_space(r, rng)),
                        direct_cands[label - 1]))
    return out


def _maybe_lead_space(response: str, rng: random.Random) -> str:
    # The policy emits responses with a leading space; the labeler sees both forms.
    return " " + response if response and rng.random() < 0.5 else response
