"""Reward sources and their weighted sum (pure).

    r = Σ_k w_k · r_k      over `reward.sources`

Each source's mean and std are reported as `reward/<name>/mean|std`. A source with weight 0
is computed and logged but does not move the policy (e.g. a task's ground-truth score kept
next to the labeler's opinion of it).
"""

from __future__ import annotations

import importlib
import inspect
from functools import lru_cache

import numpy as np

from rlaif_ray.config import RewardSource


@lru_cache(maxsize=None)
def _resolve(path: str):
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"reward.sources: cannot import function {path!r}: {err}") from None


def function_rewards(source: RewardSource, prompts: list[str], responses: list[str]) -> np.ndarray:
    """(B,) float32 rewards of a `function` source: fn(prompt=..., response=...) or fn(response)."""
    fn = _resolve(source.function)
    if "prompt" in inspect.signature(fn).parameters:
        return np.asarray([float(fn(prompt=p, response=r)) for p, r in zip(prompts, responses)], dtype=np.float32)
    return np.asarray([float(fn(r)) for r in responses], dtype=np.float32)


def combine_rewards(sources: list[RewardSource], per_source: dict[str, np.ndarray]) -> tuple[np.ndarray, dict]:
    """Weighted sum over sources; a non-finite value in a weighted source makes the total
    non-finite (the sample is then dropped and counted downstream)."""
    total = None
    stats = {}
    for s in sources:
        r = np.asarray(per_source[s.label], dtype=np.float32)
        finite = r[np.isfinite(r)]
        stats[f"reward/{s.label}/mean"] = float(finite.mean()) if finite.size else float("nan")
        stats[f"reward/{s.label}/std"] = float(finite.std()) if finite.size else float("nan")
        if s.weight:
            part = s.weight * r
            total = part if total is None else total + part
    return total, stats


def batch_rewards(sources: list[RewardSource], prompts: list[str], responses: list[str],
                  scored: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    """Every source's (B,) rewards and their weighted sum, for one batch: (total, per_source, stats).

    `scored` holds the rewards of the sources a model scored (labeler, reward models,
    classifiers) by source name; `function` sources are computed here from the texts.
    """
    per_source = {}
    for s in sources:
        if s.kind == "function":
            per_source[s.label] = function_rewards(s, prompts, responses)
        elif s.label in scored:
            per_source[s.label] = scored[s.label]
        else:
            raise ValueError(f"reward.sources: no rewards for source {s.label!r} ({s.kind}) in this batch")
    total, stats = combine_rewards(sources, per_source)
    return total, per_source, stats
