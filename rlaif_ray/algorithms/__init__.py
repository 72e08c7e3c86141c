"""Pure-torch RLHF algorithm core: masks, PPO and its whole objective, off-policy correction,
KL, advantage estimators, preference losses.

No Ray, no vLLM: every function maps tensors to tensors. Shapes are [B, T] (batch,
response tokens) with ``mask`` 1 on response tokens and 0 on right padding.
"""

from rlaif_ray.algorithms.advantages import (
    ADVANTAGE_ESTIMATORS,
    ESTIMATOR_NEEDS_CRITIC,
    AdvantageInputs,
    discounted_returns,
    estimate_advantages,
    group_advantages,
    needs_critic,
    reinforce_pp_returns,
)
from rlaif_ray.algorithms.kl import (
    AdaptiveKLController,
    FixedKLController,
    kl_estimate,
    kl_penalty_loss,
    kl_shaped_rewards,
    make_kl_controller,
)
from rlaif_ray.algorithms.masks import (
    entropy_from_logits,
    logprobs_from_logits,
    masked_mean,
    masked_sum,
    masked_var,
    masked_whiten,
)
from rlaif_ray.algorithms.objective import Minibatch, ObjectiveSettings, ppo_objective
from rlaif_ray.algorithms.off_policy import OFF_POLICY_MODES, corrected_policy_loss, importance_weights
from rlaif_ray.algorithms.ppo import compute_gae, ppo_policy_loss, ppo_value_loss
from rlaif_ray.algorithms.preference import dpo_loss, pairwise_reward_loss

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "ESTIMATOR_NEEDS_CRITIC",
    "AdaptiveKLController",
    "AdvantageInputs",
    "FixedKLController",
    "Minibatch",
    "ObjectiveSettings",
    "OFF_POLICY_MODES",
    "compute_gae",
    "corrected_policy_loss",
    "discounted_returns",
    "dpo_loss",
    "entropy_from_logits",
    "estimate_advantages",
    "group_advantages",
    "importance_weights",
    "kl_estimate",
    "kl_penalty_loss",
    "kl_shaped_rewards",
    "logprobs_from_logits",
    "make_kl_controller",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "needs_critic",
    "pairwise_reward_loss",
    "ppo_objective",
    "ppo_policy_loss",
    "ppo_value_loss",
    "reinforce_pp_returns",
]
