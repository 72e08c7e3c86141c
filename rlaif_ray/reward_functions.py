"""Verifiable reward functions for `reward.sources: [{kind: function, function: ...}]` (pure).

Rules a person can check by eye, for runs where the AI labeler is too weak to trust (a small
labeler on CPU) or as a logged-only ground truth next to the labeler's score.
"""

from __future__ import annotations

CONCISE_MIN_WORDS = 3    # fewer words is not an answer
CONCISE_TARGET_WORDS = 10  # up to this many words: the full reward
CONCISE_SPAN_WORDS = 30  # the reward falls linearly to −1 over this many extra words


def concise_answer(response: str) -> float:
    """+1 for a complete short answer, falling to −1 as it grows long:

        r = −1                                      if words < 3
        r = 1 − 2·min(max(words − 10, 0) / 30, 1)   otherwise

    e.g. 8 words → 1.0, 25 words → 0.0, 40 or more words → −1.0.
    """
    n = len(response.split())
    if n < CONCISE_MIN_WORDS:
        return -1.0
    over = max(n - CONCISE_TARGET_WORDS, 0) / CONCISE_SPAN_WORDS
    return 1.0 - 2.0 * min(over, 1.0)
