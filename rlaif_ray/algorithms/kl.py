"""KL to the reference policy: per-token estimators, reward shaping, controllers.

Estimators of KL(π‖π_ref) from samples a_t ~ π (Schulman 2020, "Approximating KL
Divergence", http://joschu.net/blog/kl-approx.html). Tensors are [B, T]; ``mask`` is 1
on response tokens, 0 on right padding.
"""

from __future__ import annotations

import torch

from rlaif_ray.algorithms.masks import masked_mean

KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token estimate of KL(π‖π_ref) from log π and log π_ref of the sampled tokens.

        k1 = logp − ref_logp                               (unbiased, can be < 0)
        k2 = ½ (logp − ref_logp)²                           (biased, ≥ 0, low variance)
        k3 = exp(ref_logp − logp) − 1 − (ref_logp − logp)   (unbiased, ≥ 0)

    logp, ref_logp: [B, T] -> [B, T]. Raises ValueError for an unknown ``kind``.
    """
    log_ratio = logp - ref_logp
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio**2
    if kind == "k3":
        neg = -log_ratio
        # expm1 keeps k3 accurate (and ≥ 0) when the two policies are close.
        return torch.expm1(neg) - neg
    raise ValueError(f"unknown KL estimator kind {kind!r}; expected one of {KL_ESTIMATORS}")


def kl_shaped_rewards(
    scores: torch.Tensor,
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    kind: str = "k1",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards with a KL penalty (Ziegler et al. 2019; Stiennon et al. 2020).

        r_t = −β·KL_t + [t = last valid token]·score

    scores: [B] sequence rewards; logp, ref_logp, mask: [B, T].
    Returns (token_rewards [B, T], kl [B, T]), both 0 on padding. A row with no valid
    token gets all zeros (its score is dropped: there is no token to carry it).
    """
    m = mask.to(logp.dtype)
    kl = kl_estimate(logp, ref_logp, kind) * m
    token_rewards = -beta * kl
    lengths = m.sum(dim=1).long()  # [B]
    has_tokens = lengths > 0
    # Right padding: the last valid token sits at index length − 1.
    last_idx = (lengths - 1).clamp(min=0)
    bonus = scores.to(logp.dtype) * has_tokens.to(logp.dtype)
    token_rewards = token_rewards.scatter_add(1, last_idx.unsqueeze(1), bonus.unsqueeze(1))
    return token_rewards, kl


def kl_penalty_loss(
    logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, kind: str
) -> torch.Tensor:
    """KL-in-loss term: mean_{valid tokens in batch} KL_t, with KL_t = kl_estimate(kind).

    Used when the KL is a loss term rather than a reward penalty (GRPO, Shao et al. 2024,
    uses k3). logp, ref_logp, mask: [B, T] -> 0-dim; gradients flow through ``logp``.
    """
    return masked_mean(kl_estimate(logp, ref_logp.detach(), kind), mask)


class FixedKLController:
    """Constant KL coefficient β; ``update`` is a no-op."""

    def __init__(self, coef: float):
        self.value = float(coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Keep β unchanged (same signature as the adaptive controller)."""

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, d: dict) -> None:
        self.value = float(d["value"])


class AdaptiveKLController:
    """Proportional controller steering the measured KL to a target (Ziegler et al. 2019,
    arXiv 1909.08593, §2.2):

        e = clip(KL / target − 1, −0.2, 0.2)
        β ← β · (1 + e · n_steps / horizon)
    """

    def __init__(self, init_coef: float, target: float, horizon: int):
        if target <= 0 or horizon <= 0:
            raise ValueError(
                f"AdaptiveKLController needs target > 0 and horizon > 0, got {target=}, {horizon=}"
            )
        self.value = float(init_coef)
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Apply one controller step; ``n_steps`` is the number of samples since the last."""
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, d: dict) -> None:
        self.value = float(d["value"])
        self.target = float(d["target"])
        self.horizon = int(d["horizon"])


KL_CONTROLLERS = ("fixed", "adaptive")


def make_kl_controller(
    kind: str, coef: float, target: float | None = None, horizon: int | None = None
) -> FixedKLController | AdaptiveKLController:
    """Build a KL controller: ``"fixed"`` (β = coef) or ``"adaptive"`` (β₀ = coef)."""
    if kind == "fixed":
        return FixedKLController(coef)
    if kind == "adaptive":
        if target is None or horizon is None:
            raise ValueError("adaptive KL controller needs both target and horizon")
        return AdaptiveKLController(coef, target, horizon)
    raise ValueError(f"unknown KL controller kind {kind!r}; expected one of {KL_CONTROLLERS}")
