"""From labeler next-token logprobs to rewards and preferences (RLAIF, arXiv 2309.00267).

Three pure pieces:

1. **Exact candidate scoring.** A candidate answer (" 10") may be several tokens. The
   engine can only answer "log P(next token = t | prompt + prefix)" for a token prefix, so
   ``plan_candidate_queries`` lists the prefixes to ask about and ``candidate_logprobs``
   combines the answers by the chain rule, correcting for candidates that are prefixes of
   one another.
2. **Direct RLAIF reward** (paper §3.3): s = Σ_i i·P(i) over the scores 1..10,
   reward = 2·(s − 1)/9 − 1 ∈ [−1, 1].
3. **Pairwise preference** (paper §2.1): softmax over the logprobs of "1" and "2", averaged
   over both presentation orders to cancel position bias.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence, TypeVar

import torch

__all__ = [
    "plan_candidate_queries",
    "candidate_logprobs",
    "candidate_probs",
    "expected_score",
    "direct_reward",
    "preference_from_swapped",
    "pairwise_prob_first",
]

Prefix = tuple[int, ...]
Answers = Mapping[Prefix, Mapping[int, float]]
_Num = TypeVar("_Num", float, torch.Tensor)

NUM_SCORES = 10


def _as_tuples(candidates: Sequence[Sequence[int]]) -> list[Prefix]:
    cands = [tuple(int(t) for t in c) for c in candidates]
    if any(len(c) == 0 for c in cands):
        raise ValueError("candidates must be non-empty token-id sequences")
    if len(set(cands)) != len(cands):
        # Two candidates with the same tokens would count the same mass twice.
        raise ValueError(f"candidates must be distinct token sequences, got {cands}")
    return cands


def plan_candidate_queries(candidates: Sequence[Sequence[int]]) -> dict[Prefix, tuple[int, ...]]:
    """The next-token questions needed to score ``candidates`` exactly.

    Returns ``{prefix: next_ids}``: after ``prompt + prefix`` the engine must report the
    logprobs of each id in ``next_ids`` (sorted, distinct). Prefixes are token tuples
    relative to the end of the prompt; the empty prefix ``()`` is always present.

    Example: candidates [[5], [5, 7], [6]] (" 1", " 10" as two tokens, " 2") →
    ``{(): (5, 6), (5,): (7,)}``.
    """
    plan: dict[Prefix, set[int]] = {(): set()}
    for cand in _as_tuples(candidates):
        for k, tok in enumerate(cand):
            plan.setdefault(cand[:k], set()).add(tok)
    return {prefix: tuple(sorted(ids)) for prefix, ids in plan.items()}


def _prefix_logprob(cand: Prefix, answers: Answers, start: int = 0) -> float:
    """Σ_{k ≥ start} log P(cand_k | prompt, cand_<k), from the engine's answers."""
    total = 0.0
    for k in range(start, len(cand)):
        prefix = cand[:k]
        try:
            total += float(answers[prefix][cand[k]])
        except KeyError:
            raise KeyError(
                f"no logprob for token {cand[k]} after prefix {prefix}; "
                "ask the engine for every entry of plan_candidate_queries(candidates)"
            ) from None
    return total


def candidate_logprobs(candidates: Sequence[Sequence[int]], answers: Answers) -> list[float]:
    """log P(the labeler's complete answer is candidate c), for each candidate.

    Chain rule: log P(c as a prefix) = Σ_k log P(c_k | prompt, c_<k).

    Prefix overlap: when c is a strict prefix of other candidates (" 1" = [a] inside
    " 10" = [a, b]), sampling c's tokens does not mean the answer *is* c — the labeler may
    go on to the longer candidate. So the mass of c excludes the mass of every candidate d
    extending it, taking only the *nearest* extensions D(c) (those with no other candidate
    strictly between c and d; deeper ones are already inside them):

        P*(c) = P(c) · (1 − Σ_{d ∈ D(c)} P(d_{>|c|} | prompt, c))

    Hand case: P(a) = 0.5, P(b | a) = 0.4 → P*(" 10") = 0.2, P*(" 1") = 0.5 · 0.6 = 0.3.
    A labeler certain of " 10" (P(a) = 1, P(b | a) = 1) gets P*(" 1") = 0, so its expected
    score is 10, not 5.5. Computed as log P(c) + log1p(−Σ ...) for accuracy; −inf when the
    extensions take all of c's mass. The correction assumes nothing else competes with
    the extensions after c (the engine gives no "end of answer" probability); without it
    P(" 1") would double-count P(" 10").

    ``answers[prefix][tok]`` = log P(tok | prompt + prefix), for every query of
    ``plan_candidate_queries(candidates)``; a missing one raises KeyError.
    """
    cands = _as_tuples(candidates)
    out: list[float] = []
    for c in cands:
        logp = _prefix_logprob(c, answers)
        longer = [d for d in cands if len(d) > len(c) and d[: len(c)] == c]
        nearest = [
            d for d in longer if not any(len(e) < len(d) and d[: len(e)] == e for e in longer)
        ]
        if nearest:
            taken = sum(math.exp(_prefix_logprob(d, answers, start=len(c))) for d in nearest)
            logp = logp + math.log1p(-taken) if taken < 1.0 else -math.inf
        out.append(logp)
    return out


def candidate_probs(
    candidates: Sequence[Sequence[int]], answers: Answers, renormalise: bool = True
) -> torch.Tensor:
    """(C,) float32 probabilities P*(c) of ``candidate_logprobs``, divided by their sum
    over the candidate set when ``renormalise`` (paper: scores renormalised over 1..10).
    All-zero mass gives NaN everywhere (0/0) — the caller drops non-finite rewards."""
    logp = torch.tensor(candidate_logprobs(candidates, answers), dtype=torch.float64)
    if renormalise:
        # log-softmax keeps precision when every candidate is unlikely; all −inf → NaN.
        probs = torch.exp(logp - torch.logsumexp(logp, dim=0))
    else:
        probs = torch.exp(logp)
    return probs.to(torch.float32)


def _score_probs(probs: torch.Tensor | Sequence) -> torch.Tensor:
    p = probs if torch.is_tensor(probs) else torch.as_tensor(probs, dtype=torch.float64)
    if not p.is_floating_point():
        p = p.to(torch.float64)
    if p.shape[-1:] != (NUM_SCORES,):
        shape = tuple(p.shape)
        raise ValueError(f"probs must have last dim {NUM_SCORES} (scores 1..10), got {shape}")
    return p


def expected_score(probs: torch.Tensor | Sequence) -> torch.Tensor:
    """s = Σ_{i=1..10} i · P(i) / Σ_i P(i) over the last dim: (..., 10) → (...).

    Rows are renormalised, so unnormalised non-negative masses are fine; an all-zero row
    gives NaN (0/0), which the caller counts and drops as a non-finite reward."""
    s, dtype = _expected_score64(probs)
    return s.to(dtype)


def _expected_score64(probs: torch.Tensor | Sequence) -> tuple[torch.Tensor, torch.dtype]:
    # Computed in float64 so exact cases (uniform → 0) stay exact in float32 outputs.
    p = _score_probs(probs)
    q = p.to(torch.float64)
    scores = torch.arange(1, NUM_SCORES + 1, dtype=torch.float64, device=p.device)
    return (q * scores).sum(-1) / q.sum(-1), p.dtype


def direct_reward(probs: torch.Tensor | Sequence) -> torch.Tensor:
    """Direct-RLAIF reward 2·(s − 1)/9 − 1 ∈ [−1, 1], s = ``expected_score(probs)``:
    (..., 10) → (...), in the dtype of ``probs`` (float64 for lists). One-hot on 10 → 1,
    on 1 → −1, uniform (s = 5.5) → 0; NaN for an all-zero row."""
    s, dtype = _expected_score64(probs)
    return (2.0 * (s - 1.0) / (NUM_SCORES - 1) - 1.0).to(dtype)


def preference_from_swapped(p_ab: _Num, p_ba: _Num) -> _Num:
    """P(A preferred) = (p_ab + (1 − p_ba)) / 2, cancelling position bias (paper §2.1).

    p_ab = P(label "1") with A shown first; p_ba = P(label "1") with B shown first, so
    1 − p_ba is the second order's vote for A. A labeler that always answers "1" gives
    (1 + 0)/2 = 0.5. Floats or tensors (elementwise)."""
    return (p_ab + 1.0 - p_ba) / 2.0


def pairwise_prob_first(logp_1: _Num, logp_2: _Num) -> _Num:
    """P("1") = softmax(logp_1, logp_2)[0] = σ(logp_1 − logp_2), renormalised over the two
    labels. Floats or tensors; both −inf gives NaN."""
    if torch.is_tensor(logp_1) or torch.is_tensor(logp_2):
        return torch.sigmoid(torch.as_tensor(logp_1) - torch.as_tensor(logp_2))
    d = float(logp_1) - float(logp_2)
    if math.isnan(d):
        return math.nan
    # Stable sigmoid: never exponentiate a large positive number.
    return 1.0 / (1.0 + math.exp(-d)) if d >= 0 else math.exp(d) / (1.0 + math.exp(d))
