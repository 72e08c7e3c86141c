"""What every backend's two ends share: reading the learner's weights bucket by bucket, and
loading tensors into a live vLLM engine.

The learner end (a *sender*, one per learner rank) and the engine end (a *receiver*, one per
rollout engine) of each backend build on these two functions; the backends differ only in
how a bucket travels between them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from rlaif_ray.weight_sync.format import BucketPlan, FlatBucket, WeightMetadata, check_names, with_tied_head


def learner_metadata(module: torch.nn.Module) -> WeightMetadata:
    """Names, full shapes and dtypes of the policy's parameters, in HF checkpoint names."""
    return WeightMetadata.of(list(module.named_parameters()))


def learner_buckets(module: torch.nn.Module, plan: BucketPlan, zero_stage: int
                    ) -> Iterator[tuple[FlatBucket, dict[str, torch.Tensor]]]:
    """Each bucket of `plan` with the full tensors it holds, detached, in plan order.

    Collective under ZeRO-3: every learner rank must iterate to the end, since each bucket's
    parameters are gathered on all ranks (one bucket at a time, so the extra memory is one
    bucket, not a second model). The tensors are valid only until the next bucket.
    """
    params = dict(module.named_parameters())
    check_names(plan, list(params))
    for bucket in plan.buckets:
        chosen = [params[s.name] for s in bucket.slots]
        if zero_stage == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(chosen, modifier_rank=None):
                yield bucket, {s.name: p.detach() for s, p in zip(bucket.slots, chosen)}
        else:
            yield bucket, {s.name: p.detach() for s, p in zip(bucket.slots, chosen)}


def load_into_engine(llm, named: Iterable[tuple[str, torch.Tensor]], reset_prefix_cache: bool = True) -> None:
    """Load a full state dict (HF checkpoint names; a list or a lazy stream) into the live engine.

    `reload_weights` gets every tensor in one call because vLLM fuses q/k/v and gate/up:
    half of a fused group would leave the other half stale. The prefix cache is reset
    afterwards because cached prefixes hold KV computed with the old weights.
    `reset_prefix_cache=False` exists only to show, in tests, what the probe catches.

    Tied embeddings: the learner sends each parameter once, so `lm_head.weight` is absent
    when the model ties it to the input embedding. vLLM's reload then skips the head layer
    and on CPU the head keeps its pre-packed copy of the OLD matrix: logits drift from the
    learner's at every sync. Naming the embedding again as `lm_head.weight` (the same tensor,
    nothing more is sent) makes vLLM load and re-pack the head; see docs/weight-sync.md.
    """
    tied = bool(getattr(llm.model_config.hf_text_config, "tie_word_embeddings", False))
    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": with_tied_head(named, tied),
                                                  "is_checkpoint_format": True})
    if reset_prefix_cache:
        llm.reset_prefix_cache()
