"""Weight sync: the learner's new policy reaches every rollout engine, every PPO iteration.

One subsystem with three ends per backend:

- a **sender**, held by every learner rank (`LearnerWorker.sender`);
- a **receiver**, held by every rollout engine (`RolloutActor.receiver`);
- the **driver end** (`weight_sync.driver`), which calls the two through the actors'
  `weight_sender` / `weight_receiver` methods and bounds every wait by `sync.timeout_s`.

Modules: `format` (the one tensor format and bucket plan every backend shares), `ends`
(reading the learner's weights bucket by bucket, loading tensors into a live engine),
`object_store` and `nccl` (the backends' sender and receiver), `driver` (their driver ends),
`probe` (the check that an engine serves the learner's weights). A new backend (e.g. CUDA
IPC for roles sharing a GPU) is one new module with a sender and a receiver, an entry in
`BACKENDS` below and a driver end in `weight_sync.driver`. docs/weight-sync.md has the design.
"""

from __future__ import annotations

import torch

from rlaif_ray.config import SyncSection
from rlaif_ray.weight_sync import nccl, object_store

# sync.backend -> (sender class, receiver class, vLLM worker extension or None)
BACKENDS = {
    "object_store": (object_store.ObjectStoreSender, object_store.ObjectStoreReceiver, None),
    "nccl": (nccl.NcclSender, nccl.NcclReceiver, nccl.WORKER_EXTENSION),
}


def make_sender(sync: SyncSection, module: torch.nn.Module, zero_stage: int, rank: int):
    """The learner end of `sync.backend` for learner rank `rank` holding `module`."""
    return BACKENDS[sync.backend][0](module, sync.bucket_mib * 2**20, zero_stage, rank)


def make_receiver(sync: SyncSection, llm, name: str):
    """The engine end of `sync.backend` for the live vLLM engine `llm`."""
    return BACKENDS[sync.backend][1](llm, name)


def worker_extension(sync: SyncSection) -> str | None:
    """The `worker_extension_cls` the engine must be built with for `sync.backend` (or None)."""
    return BACKENDS[sync.backend][2]
