"""Pure RLAIF labeler core: prompt templates and candidate scoring (no Ray, no engines)."""

from rlaif_ray.labeler.prompts import (
    DIRECT_SCORE_STRINGS,
    KINDS,
    PAIRWISE_LABEL_STRINGS,
    PREAMBLES,
    TASKS,
    Exemplar,
    append_rationale,
    build_cot_prompt,
    build_direct_prompt,
    build_pairwise_prompt,
    direct_candidate_strings,
    pairwise_candidate_strings,
)
from rlaif_ray.labeler.scores import (
    candidate_logprobs,
    candidate_probs,
    direct_reward,
    expected_score,
    pairwise_prob_first,
    plan_candidate_queries,
    preference_from_swapped,
)

__all__ = [
    "DIRECT_SCORE_STRINGS",
    "KINDS",
    "PAIRWISE_LABEL_STRINGS",
    "PREAMBLES",
    "TASKS",
    "Exemplar",
    "append_rationale",
    "build_cot_prompt",
    "build_direct_prompt",
    "build_pairwise_prompt",
    "direct_candidate_strings",
    "pairwise_candidate_strings",
    "candidate_logprobs",
    "candidate_probs",
    "direct_reward",
    "expected_score",
    "pairwise_prob_first",
    "plan_candidate_queries",
    "preference_from_swapped",
]
