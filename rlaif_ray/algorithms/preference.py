"""Pairwise preference losses: reward-model training and DPO.

Pairs are (A, B). With hard labels A is the chosen response; with soft labels
``target_a`` [N] in [0, 1] is P(A preferred), e.g. the AI labeler's position-debiased
preference (RLAIF, Lee et al. 2023, arXiv 2309.00267, distilled RM).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _binary_preference_nll(h: torch.Tensor, target_a: torch.Tensor | None) -> torch.Tensor:
    """Per pair −[t·log σ(h) + (1−t)·log σ(−h)], t = 1 when ``target_a`` is None; [N]."""
    if target_a is None:
        return -F.logsigmoid(h)
    t = target_a.to(h.dtype)
    return -(t * F.logsigmoid(h) + (1.0 - t) * F.logsigmoid(-h))


def _side_agreement(h: torch.Tensor, target_a: torch.Tensor | None) -> torch.Tensor:
    """Fraction of pairs where the model's side (h > 0 ⇒ A) matches the label's side
    (target > 0.5 ⇒ A; hard labels always A). A tie on both sides counts as a match."""
    model_a = h > 0
    label_a = torch.ones_like(model_a) if target_a is None else target_a > 0.5
    return (model_a == label_a).float().mean()


def pairwise_reward_loss(
    score_a: torch.Tensor,
    score_b: torch.Tensor,
    target_a: torch.Tensor | None = None,
    margin: torch.Tensor | float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Reward-model loss on scalar scores of the two responses of each pair.

    Hard labels (``target_a`` None, A chosen), Bradley–Terry with an optional margin
    (Llama 2, Touvron et al. 2023):   L = −log σ(a − b − margin)
    Soft labels t = P(A preferred), cross-entropy on softmax([a, b]) (RLAIF distilled RM):
                                      L = −[t·log σ(a − b) + (1 − t)·log σ(b − a)]

    score_a, score_b, target_a: [N]; margin: scalar or [N], hard labels only.
    Returns (mean loss, stats): accuracy (see ``_side_agreement``) and
    margin_mean = mean(a − b). Stats are 0-dim detached tensors.
    """
    if margin is not None and target_a is not None:
        raise ValueError("margin applies to hard labels only; pass target_a=None to use it")
    diff = score_a - score_b
    h = diff if margin is None else diff - margin
    loss = _binary_preference_nll(h, target_a).mean()
    with torch.no_grad():
        stats = {
            "accuracy": _side_agreement(diff, target_a),
            "margin_mean": diff.mean(),
        }
    return loss, stats


def dpo_loss(
    policy_logp_a: torch.Tensor,
    policy_logp_b: torch.Tensor,
    ref_logp_a: torch.Tensor,
    ref_logp_b: torch.Tensor,
    beta: float,
    target_a: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Direct Preference Optimisation (Rafailov et al. 2023, arXiv 2305.18290).

        ρ_a = β·(log π(a) − log π_ref(a)),  ρ_b likewise   (implicit rewards)
        h   = ρ_a − ρ_b
        hard (A chosen):   L = −log σ(h)
        soft (t = P(A)):   L = −[t·log σ(h) + (1 − t)·log σ(−h)]

    All inputs [N] summed sequence logprobs; the reference is a constant (detached).
    Returns (mean loss, stats), 0-dim detached tensors:
      reward_accuracy: fraction where the side of h (h > 0 ⇒ A) matches the label's;
      reward_margin:   mean(h) = mean(ρ_a − ρ_b);
      chosen_reward:   mean(ρ_a);  rejected_reward: mean(ρ_b)   (A is "chosen").
    """
    rho_a = beta * (policy_logp_a - ref_logp_a.detach())
    rho_b = beta * (policy_logp_b - ref_logp_b.detach())
    h = rho_a - rho_b
    loss = _binary_preference_nll(h, target_a).mean()
    with torch.no_grad():
        stats = {
            "reward_accuracy": _side_agreement(h, target_a),
            "reward_margin": h.mean(),
            "chosen_reward": rho_a.mean(),
            "rejected_reward": rho_b.mean(),
        }
    return loss, stats
