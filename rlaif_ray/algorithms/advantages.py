"""Advantage estimators behind one registry: ppo, grpo, rloo, reinforce_pp.

Each estimator maps ``AdvantageInputs`` to ``(advantages [B, T], returns [B, T] | None)``;
``returns`` is only produced by estimators that train a critic. Tensors are [B, T] with
``mask`` 1 on response tokens and 0 on right padding; for group estimators the B rows
are ``prompts · group_size`` samples, the samples of one prompt contiguous.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from rlaif_ray.algorithms.masks import masked_sum, masked_whiten
from rlaif_ray.algorithms.ppo import compute_gae

GROUP_KINDS = ("grpo", "rloo")


def group_advantages(
    rewards: torch.Tensor, group_size: int, kind: str, eps: float = 1e-6
) -> torch.Tensor:
    """Sequence advantages from a per-prompt baseline.

      grpo (Shao et al. 2024, DeepSeekMath): A_i = (r_i − mean_g) / (std_g + eps),
           std_g the population std (divide by G) of the prompt's group;
      rloo (Ahmadian et al. 2024; Kool et al. 2019): A_i = r_i − mean_{j≠i} r_j
           = G/(G−1) · (r_i − mean_g); needs G ≥ 2.

    rewards: [B], B = prompts · G -> [B].
    """
    if group_size < 1 or rewards.numel() % group_size != 0:
        raise ValueError(
            f"batch of {rewards.numel()} rewards is not a multiple of group_size={group_size}"
        )
    grouped = rewards.reshape(-1, group_size)  # [P, G]
    mean = grouped.mean(dim=1, keepdim=True)
    if kind == "grpo":
        std = grouped.std(dim=1, unbiased=False, keepdim=True)
        adv = (grouped - mean) / (std + eps)
    elif kind == "rloo":
        if group_size < 2:
            raise ValueError(
                f"rloo needs group_size >= 2 (a leave-one-out baseline), got {group_size}"
            )
        others_mean = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
        adv = grouped - others_mean
    else:
        raise ValueError(f"unknown group advantage kind {kind!r}; expected one of {GROUP_KINDS}")
    return adv.reshape(-1)


def discounted_returns(
    token_rewards: torch.Tensor, mask: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Reward-to-go G_t = r_t + γ·G_{t+1} within valid tokens (G = 0 past the last).

    token_rewards, mask: [B, T] -> [B, T], 0 on padding.
    """
    m = mask.to(token_rewards.dtype)
    rewards = token_rewards * m
    out = torch.zeros_like(rewards)
    running = rewards.new_zeros(rewards.shape[0])
    for t in reversed(range(rewards.shape[1])):
        running = (rewards[:, t] + gamma * running) * m[:, t]
        out[:, t] = running
    return out


def reinforce_pp_returns(
    token_rewards: torch.Tensor, mask: torch.Tensor, gamma: float
) -> torch.Tensor:
    """REINFORCE++ advantages (Hu 2025, arXiv 2501.03262).

        G_t = r_t + γ·G_{t+1}        (per-token reward-to-go, KL-shaped rewards)
        A   = whiten(G) over all valid tokens of the batch (global, not per prompt)

    token_rewards, mask: [B, T] -> [B, T], 0 on padding.
    """
    return masked_whiten(discounted_returns(token_rewards, mask, gamma), mask)


@dataclass(frozen=True)
class AdvantageInputs:
    """What any advantage estimator may read. Unused fields are ignored."""

    token_rewards: torch.Tensor  # (B, T) score on the last token − β·KL_t, 0 on padding
    mask: torch.Tensor  # (B, T) 1 on response tokens, 0 on right padding
    values: torch.Tensor | None  # (B, T) critic V(s_t) at rollout time, or None without a critic
    group_size: int  # samples per prompt; rows of one prompt are contiguous
    gamma: float  # discount
    lam: float  # GAE λ


AdvantageFn = Callable[[AdvantageInputs], tuple[torch.Tensor, torch.Tensor | None]]


def _ppo(inputs: AdvantageInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE; advantages whitened over valid tokens, returns left raw for the critic."""
    if inputs.values is None:
        raise ValueError(
            "advantage estimator 'ppo' needs critic values (AdvantageInputs.values is None)"
        )
    adv, returns = compute_gae(
        inputs.token_rewards, inputs.values, inputs.mask, inputs.gamma, inputs.lam
    )
    return masked_whiten(adv, inputs.mask), returns


def _broadcast_sequence(adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B] -> [B, T]: the sequence advantage on every valid token, 0 on padding."""
    return adv.unsqueeze(1) * mask.to(adv.dtype)


def _group(kind: str) -> AdvantageFn:
    def estimator(inputs: AdvantageInputs) -> tuple[torch.Tensor, None]:
        # Σ_t r_t = score − β·ΣKL with KL in the reward, the plain score with KL in the loss.
        seq_reward = masked_sum(inputs.token_rewards, inputs.mask, dim=1)  # [B]
        adv = group_advantages(seq_reward, inputs.group_size, kind)
        return _broadcast_sequence(adv, inputs.mask), None

    estimator.__name__ = f"_{kind}"
    estimator.__doc__ = f"Group baseline {kind!r} on the summed sequence reward, per token."
    return estimator


def _reinforce_pp(inputs: AdvantageInputs) -> tuple[torch.Tensor, None]:
    """REINFORCE++: whitened discounted reward-to-go, no critic."""
    return reinforce_pp_returns(inputs.token_rewards, inputs.mask, inputs.gamma), None


ADVANTAGE_ESTIMATORS: dict[str, AdvantageFn] = {
    "ppo": _ppo,
    "grpo": _group("grpo"),
    "rloo": _group("rloo"),
    "reinforce_pp": _reinforce_pp,
}

ESTIMATOR_NEEDS_CRITIC = frozenset({"ppo"})


def needs_critic(name: str) -> bool:
    """Whether estimator ``name`` needs a value model (raises ValueError if unknown)."""
    _lookup(name)
    return name in ESTIMATOR_NEEDS_CRITIC


def _lookup(name: str) -> AdvantageFn:
    try:
        return ADVANTAGE_ESTIMATORS[name]
    except KeyError:
        valid = ", ".join(sorted(ADVANTAGE_ESTIMATORS))
        raise ValueError(f"unknown advantage estimator {name!r}; valid names: {valid}") from None


def estimate_advantages(
    name: str, inputs: AdvantageInputs
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the registered estimator ``name``: (advantages [B, T], returns [B, T] | None)."""
    return _lookup(name)(inputs)
