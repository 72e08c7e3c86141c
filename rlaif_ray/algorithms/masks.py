"""Masked reductions and logit helpers.

Shapes: ``x`` and ``mask`` are ``[B, T]`` (batch, response tokens) unless stated;
``mask`` is 1 on response tokens and 0 on right padding (float or bool).
"""

from __future__ import annotations

import torch


def _as_float_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.to(dtype=like.dtype if like.is_floating_point() else torch.float32)


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Σ_i x_i·m_i over all elements (``dim=None``, 0-dim result) or along ``dim``.

    x, mask: same shape (broadcastable). Padding values never leak in, even NaN/inf,
    because they are selected away rather than multiplied by 0.
    """
    m = _as_float_mask(mask, x)
    x = torch.where(m.bool(), x, torch.zeros_like(x))
    return x.sum() if dim is None else x.sum(dim=dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Σ x·m / Σ m over all valid elements (``dim=None``) or along ``dim``.

    A slice with no valid element gives 0 instead of NaN.
    """
    m = _as_float_mask(mask, x)
    total = masked_sum(x, m, dim)
    count = m.sum() if dim is None else m.sum(dim=dim)
    return total / count.clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = False) -> torch.Tensor:
    """Variance over all valid elements: Σ m·(x − μ)² / (N − [unbiased]), N = Σ m.

    Returns a 0-dim tensor; 0 when there are too few valid elements.
    """
    m = _as_float_mask(mask, x)
    mean = masked_mean(x, m)
    sq = masked_sum((x - mean) ** 2, m)
    n = m.sum()
    denom = n - 1.0 if unbiased else n
    # sq is 0 whenever denom <= 0 (N <= 1), so clamping the denominator yields 0 there.
    return sq / denom.clamp(min=1.0)


def masked_whiten(
    x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """Normalise over valid elements: (x − μ)/sqrt(σ² + eps), μ, σ² from ``masked_var``.

    With ``shift_mean=False`` the mean is added back (scale only), as in PPO reward
    whitening. x, mask: [B, T] -> [B, T], 0 at masked positions.
    """
    m = _as_float_mask(mask, x)
    mean = masked_mean(x, m)
    var = masked_var(x, m)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(m.bool(), out, torch.zeros_like(out))


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last dim: H = −Σ_v p_v·log p_v,
    log p = z − logsumexp(z).

    logits: [B, T, V] -> [B, T]. log_softmax subtracts the max before the logsumexp, so
    it is exact for large logits where logsumexp(z) − Σ p·z would cancel two big numbers.
    """
    log_p = torch.log_softmax(logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def logprobs_from_logits(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[..., token_ids]: log π(a_t | s_t) = z_{a_t} − logsumexp(z).

    logits: [B, T, V]; token_ids: [B, T] (long) -> [B, T] float32 (upcast: bf16
    log-probabilities are too coarse for PPO ratios).
    """
    log_p = torch.log_softmax(logits.float(), dim=-1)
    return torch.gather(log_p, -1, token_ids.long().unsqueeze(-1)).squeeze(-1)
