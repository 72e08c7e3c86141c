"""Evaluation metrics against hand-worked values."""

import numpy as np
import pytest
import torch

from rlaif_ray.metrics import harmless_rate, labeler_alignment, win_rate, win_rate_interval


def test_labeler_alignment_two_column_with_tie():
    # item 0: 0.8 > 0.2 → picks 0, human 0 → 1
    # item 1: 0.3 < 0.7 → picks 1, human 1 → 1
    # item 2: 0.6 > 0.4 → picks 0, human 1 → 0
    # item 3: 0.5 = 0.5 → tie → 0.5          mean = 2.5 / 4 = 0.625
    soft = [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.5, 0.5]]
    assert labeler_alignment(soft, [0, 1, 1, 0]) == pytest.approx(0.625)


def test_labeler_alignment_one_column_inputs():
    # P(resp 1) = 0.9 (→0, agree), 0.1 (→1, agree), 0.5 (tie) → 2.5 / 3
    assert labeler_alignment(np.array([0.9, 0.1, 0.5]), torch.tensor([0, 1, 1])) == pytest.approx(
        2.5 / 3
    )
    with pytest.raises(ValueError, match="0 or 1"):
        labeler_alignment([0.9], [2])
    with pytest.raises(ValueError, match="human must be"):
        labeler_alignment([0.9, 0.2], [0])


def test_win_rate_with_ties():
    # 0.7 win, 0.2 loss, 0.5 tie (half), 0.5 + 1e-12 still a tie → (1 + 0 + 0.5 + 0.5) / 4
    assert win_rate([0.7, 0.2, 0.5, 0.5 + 1e-12]) == pytest.approx(0.5)
    assert win_rate(torch.tensor([0.51, 0.9])) == 1.0
    with pytest.raises(ValueError, match="empty"):
        win_rate([])


def test_win_rate_wilson_interval():
    # 8 wins of 10, z = 1.959964: z²/n = 0.384146
    # centre = (0.8 + 0.192073) / 1.384146 = 0.716739
    # half = 1.959964 / 1.384146 · sqrt(0.016 + 0.0096036) = 0.226577
    # → [0.490162, 0.943316]
    rate, low, high = win_rate_interval([0.9] * 8 + [0.1] * 2)
    assert rate == pytest.approx(0.8)
    assert low == pytest.approx(0.490162, abs=1e-5)
    assert high == pytest.approx(0.943316, abs=1e-5)
    # All wins: interval stays inside [0, 1] and contains 1.
    _, lo, hi = win_rate_interval([1.0] * 5, confidence=0.9)
    assert 0.0 < lo < 1.0 and hi == pytest.approx(1.0)
    with pytest.raises(ValueError, match="confidence"):
        win_rate_interval([0.9], confidence=1.0)


def test_harmless_rate():
    assert harmless_rate([True, False, True, True]) == 0.75
    assert harmless_rate(np.array([0, 1])) == 0.5
    with pytest.raises(ValueError, match="0/1"):
        harmless_rate([0.3])
