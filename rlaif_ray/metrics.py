"""Evaluation metrics of RLAIF (Lee et al. 2023, arXiv 2309.00267, §3.3–3.4).

- **AI labeler alignment**: how often the labeler's soft preference picks the response a
  human preferred.
- **Win rate**: how often a judge prefers policy A's response over B's.
- **Harmless rate**: the fraction of responses judged harmless.

Inputs may be lists, numpy arrays or torch tensors; results are Python floats. Ties (a
preference of exactly 0.5, within ``TIE_TOL``) count half. Empty inputs raise ValueError.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import torch

__all__ = ["TIE_TOL", "labeler_alignment", "win_rate", "win_rate_interval", "harmless_rate"]

TIE_TOL = 1e-9
"""Preference margins within this of zero are ties and score 0.5."""


def _as_f64(x: Any, name: str) -> torch.Tensor:
    t = x.detach().cpu() if torch.is_tensor(x) else torch.as_tensor(x)
    t = t.to(torch.float64)
    if t.numel() == 0:
        raise ValueError(f"{name} is empty")
    return t


def _step(margin: torch.Tensor) -> torch.Tensor:
    """1 where margin > 0, 0.5 where |margin| ≤ TIE_TOL, 0 where margin < 0."""
    win = (margin > TIE_TOL).to(torch.float64)
    tie = (margin.abs() <= TIE_TOL).to(torch.float64)
    return win + 0.5 * tie


def labeler_alignment(soft_prefs: Any, human: Any) -> float:
    """Fraction of items where the labeler's preferred response is the human's.

    soft_prefs: (D, 2) = (P(response 1), P(response 2)), or (D,) = P(response 1).
    human: (D,) ints, index (0 or 1) of the response the human preferred.
    Per item the margin m = P(1) − P(2) (for (D,), m = 2·P(1) − 1); the item scores
    1 if sign(m) agrees with the human, 0.5 if m = 0, 0 otherwise; the result is the mean.
    """
    p = _as_f64(soft_prefs, "soft_prefs")
    h = _as_f64(human, "human")
    if p.dim() == 2 and p.shape[1] == 2:
        margin = p[:, 0] - p[:, 1]
    elif p.dim() == 1:
        margin = 2.0 * p - 1.0
    else:
        raise ValueError(f"soft_prefs must be (D, 2) or (D,), got {tuple(p.shape)}")
    if h.shape != margin.shape:
        raise ValueError(f"human must be ({margin.shape[0]},), got {tuple(h.shape)}")
    if not bool(((h == 0) | (h == 1)).all()):
        raise ValueError("human must hold 0 or 1 (index of the preferred response)")
    # Human picked 0 → agreement needs m > 0; picked 1 → m < 0.
    signed = torch.where(h == 0, margin, -margin)
    return float(_step(signed).mean())


def _win_scores(p_a_preferred: Any) -> torch.Tensor:
    p = _as_f64(p_a_preferred, "p_a_preferred").reshape(-1)
    return _step(p - 0.5)


def win_rate(p_a_preferred: Any) -> float:
    """Mean over items of 1 if P(A preferred) > 0.5, 0.5 if = 0.5, 0 if < 0.5."""
    return float(_win_scores(p_a_preferred).mean())


def win_rate_interval(p_a_preferred: Any, confidence: float = 0.95) -> tuple[float, float, float]:
    """(rate, low, high): the win rate with its Wilson score interval.

    With n items, p̂ = win rate (ties counted as half a win, so the "successes" n·p̂ may be a
    half-integer), z = Φ⁻¹((1 + confidence)/2):

        centre = (p̂ + z²/(2n)) / (1 + z²/n)
        half   = z / (1 + z²/n) · sqrt(p̂(1 − p̂)/n + z²/(4n²))
        (low, high) = (centre − half, centre + half)

    8 wins of 10 at 95% → (0.8, ≈0.490, ≈0.943).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    scores = _win_scores(p_a_preferred)
    n = scores.numel()
    rate = float(scores.mean())
    z = NormalDist().inv_cdf((1.0 + confidence) / 2.0)
    denom = 1.0 + z * z / n
    centre = (rate + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(rate * (1.0 - rate) / n + z * z / (4 * n * n))
    return rate, max(0.0, centre - half), min(1.0, centre + half)


def harmless_rate(flags: Any) -> float:
    """Fraction of items flagged harmless; flags (D,) bools or 0/1."""
    f = _as_f64(flags, "flags").reshape(-1)
    if not bool(((f == 0) | (f == 1)).all()):
        raise ValueError("flags must be bools or 0/1")
    return float(f.mean())
