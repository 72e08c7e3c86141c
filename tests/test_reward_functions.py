"""Verifiable reward functions, against hand-computed values."""

from __future__ import annotations

from rlaif_ray.reward_functions import concise_answer


def test_concise_answer_hand_values():
    # words: 2 → −1; 8 → 1; 25 → 1 − 2·15/30 = 0; 40 → −1; 70 → −1 (clipped)
    assert [concise_answer(" ".join(["w"] * n)) for n in (2, 8, 25, 40, 70)] == [-1.0, 1.0, 0.0, -1.0, -1.0]
