"""PPO pieces: GAE, clipped policy loss, clipped value loss.

Schulman et al. 2017 (PPO, arXiv 1707.06347) and 2015 (GAE, arXiv 1506.02438), applied
per response token as in Ziegler et al. 2019 / Ouyang et al. 2022. All tensors are
[B, T]; ``mask`` is 1 on response tokens, 0 on right padding.
"""

from __future__ import annotations

import torch

from rlaif_ray.algorithms.masks import masked_mean


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation per token (Schulman et al. 2015).

        δ_t = r_t + γ·V_{t+1}·m_{t+1} − V_t
        A_t = δ_t + γλ·A_{t+1}·m_{t+1}
        R_t = A_t + V_t

    The value after the last valid token is 0 (the episode ends with the response).
    rewards, values, mask: [B, T] -> (advantages [B, T], returns [B, T]), both 0 on
    padding. Loops backwards over T, which is small (response length).
    """
    m = mask.to(values.dtype)
    rewards = rewards * m
    values = values * m
    B, T = values.shape
    advantages = torch.zeros_like(values)
    next_value = values.new_zeros(B)
    next_adv = values.new_zeros(B)
    for t in reversed(range(T)):
        # next_* are already zero beyond the last valid token: padding has m = 0.
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv_t = (delta + gamma * lam * next_adv) * m[:, t]
        advantages[:, t] = adv_t
        next_value = values[:, t]
        next_adv = adv_t
    returns = (advantages + values) * m
    return advantages, returns


def ppo_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate (Schulman et al. 2017, eq. 7), as a loss to minimise.

        r_t  = exp(logp_t − old_logp_t)
        L    = mean_{valid tokens in batch} w_t · max(−A_t·r_t, −A_t·clip(r_t, 1−ε, 1+ε))

    logp, old_logp, advantages, mask: [B, T]. ``advantages`` and ``old_logp`` are
    treated as constants (detached). The mean is over all valid tokens of the batch.
    ``weights`` (optional [B, T], detached): per-token factors w_t, e.g. importance
    weights (see off_policy.py); None means w_t = 1 and multiplies nothing.

    stats (0-dim detached tensors):
      clipfrac:   fraction of valid tokens where the clipped branch is strictly larger,
                  i.e. where the gradient is cut off;
      approx_kl:  masked mean of ½(logp − old_logp)² (the k2 estimator of KL(old‖new));
      ratio_mean: masked mean of r.
    """
    advantages = advantages.detach()
    log_ratio = logp - old_logp.detach()
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    per_token = torch.maximum(unclipped, clipped)
    if weights is not None:
        per_token = weights.detach() * per_token
    loss = masked_mean(per_token, mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((clipped > unclipped).float(), mask),
            "approx_kl": masked_mean(0.5 * log_ratio**2, mask),
            "ratio_mean": masked_mean(ratio, mask),
        }
    return loss, stats


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
) -> torch.Tensor:
    """Clipped value loss (as in OpenAI baselines' PPO2).

        v_clip = old + clamp(v − old, −c, c)
        L      = ½ · mean_{valid tokens} max((v − R)², (v_clip − R)²)

    values, old_values, returns, mask: [B, T] -> 0-dim loss. ``old_values`` and
    ``returns`` are constants (detached).
    """
    old_values = old_values.detach()
    returns = returns.detach()
    v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    err = torch.maximum((values - returns) ** 2, (v_clipped - returns) ** 2)
    return 0.5 * masked_mean(err, mask)
