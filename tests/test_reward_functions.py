"""Verifiable reward functions, against hand-computed values."""

from __future__ import annotations

from rlaif_ray.reward_functions import concise_answer


def test_concise_answer_hand_values():
    # words: 2 → −1; 8 → 1; 25 → 1 − 2·15/30 = 0; 40 → −1; 70 → −1 (clipped)
    assert [concise_answer(" ".join(["w"] * n)) for n in (2, 8, 25, 40, 70)] == [-1.0, 1.0, 0.0, -1.0, -1.0]


def test_batch_rewards_computes_function_sources_and_sums_once():
    import numpy as np
    import pytest

    from rlaif_ray.config import RewardSource
    from rlaif_ray.rewards import batch_rewards

    sources = [RewardSource(kind="labeler_direct", weight=1.0),
               RewardSource(kind="function", function="rlaif_ray.reward_functions:concise_answer", weight=0.5)]
    responses = [" ".join(["w"] * 2), " ".join(["w"] * 8)]    # concise_answer: −1, 1
    labeler = np.array([0.5, np.nan], np.float32)
    total, per_source, stats = batch_rewards(sources, ["p", "q"], responses, {"labeler_direct": labeler})
    # r = 1·labeler + 0.5·concise = (0.5 − 0.5, NaN + 0.5): a NaN source makes the total NaN.
    assert total[0] == pytest.approx(0.0) and np.isnan(total[1])
    assert per_source["concise_answer"].tolist() == [-1.0, 1.0]
    assert stats["reward/labeler_direct/mean"] == pytest.approx(0.5)      # over finite values only
    assert stats["reward/concise_answer/mean"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="no rewards for source 'labeler_direct'"):
        batch_rewards(sources, ["p", "q"], responses, {})
