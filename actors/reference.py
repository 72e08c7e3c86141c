"""Reference KL scorer: the frozen initial policy, teacher-forced.

Distribution: one actor (more can split the rows); `logprobs` returns an ObjectRef of the
(B, T) log π_ref(a_t | s_t) of every response in the given rollout shards.
"""

from __future__ import annotations

import time

import numpy as np
import ray
import torch

from rlaif_ray.batch import RolloutBatch
from rlaif_ray.config import TrainConfig
from rlaif_ray.modeling import batched_response_logprobs, load_causal_lm


class ReferenceActor:
    def __init__(self, cfg: TrainConfig):
        self.name = "reference"
        device = "cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu"
        self.model = load_causal_lm(cfg.model.policy, cfg.model.dtype, cfg.model.trust_remote_code).to(device)
        self.model.eval().requires_grad_(False)
        self.reset(cfg)

    @staticmethod
    def reuse_key(cfg: TrainConfig) -> tuple:
        """Actors of equal keys are interchangeable after `reset` (rlaif_ray.driver.warm)."""
        return cfg.model.policy, cfg.model.dtype, cfg.model.trust_remote_code

    def reset(self, cfg: TrainConfig) -> str:
        """Serve a new run (the frozen model is the same: see `reuse_key`)."""
        self.cfg = cfg
        return self.name

    def ping(self) -> str:
        return self.name

    @ray.method(num_returns=2)
    def logprobs(self, shard_refs: list) -> tuple[np.ndarray, dict]:
        """(B, T) float32 log π_ref of the responses, 0 on padding."""
        start = time.perf_counter()
        batch = RolloutBatch.concat(ray.get(list(shard_refs)))
        logp = batched_response_logprobs(self.model, batch, self.cfg.reference.batch_size,
                                         self.cfg.rollout.sampling.temperature)
        return logp, {"seconds": time.perf_counter() - start, "actor": self.name}
