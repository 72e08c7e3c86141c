"""vLLM engine construction and live weight loading, shared by the rollout and labeler actors."""

from __future__ import annotations

import logging
import os

import ray
import torch

from rlaif_ray.config import ModelSection
from rlaif_ray.modeling import max_positions
from rlaif_ray.weights import unpack_bucket, with_tied_head


def build_llm(model_path: str, model: ModelSection, kv_cache_mib: int, gpu_memory_utilization: float,
              seed: int, max_model_len: int, worker_extension_cls: str | None = None):
    """An in-process vLLM engine sized from config.

    `worker_extension_cls` (a qualname, e.g. `actors.nccl_sync.WeightGroupExtension`) is
    mixed into every vLLM worker, for `collective_rpc` calls such as the NCCL weight group's.

    Engine env vars are set here and only here, because vLLM reads them at import:
    - VLLM_ENABLE_V1_MULTIPROCESSING=0 keeps the engine core in this actor's process
      (~3 s to build instead of 20-30 s, and weights can be passed as tensors).
    """
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from vllm import LLM

    on_gpu = torch.cuda.is_available() and bool(ray.get_gpu_ids())
    max_model_len = min(max_model_len, max_positions(model_path, model.trust_remote_code))
    kwargs = dict(
        model=model_path, tokenizer=model_path, dtype=model.dtype, seed=seed,
        trust_remote_code=model.trust_remote_code, max_model_len=max_model_len,
        # processed logprobs describe the tempered distribution actually sampled from;
        # the learner divides its logits by the same temperature.
        logprobs_mode="processed_logprobs",
    )
    if on_gpu:
        kwargs["gpu_memory_utilization"] = gpu_memory_utilization
    else:
        # Compiled mode recompiles at every start (20-50 s) for ~15% speed: not worth it on CPU.
        kwargs["enforce_eager"] = True
        # Without an explicit size one CPU engine claims most of the machine's RAM.
        kwargs["kv_cache_memory_bytes"] = kv_cache_mib * 2**20
    if worker_extension_cls:
        kwargs["worker_extension_cls"] = worker_extension_cls
    _hide_rotary_reload_warning()
    return LLM(**kwargs)


def load_weight_buckets(llm, bucket_refs: list, reset_prefix_cache: bool = True) -> None:
    """Load a full state dict, sent as object-store buckets, into the live engine."""
    tensors = []
    for bucket in ray.get(list(bucket_refs)):
        tensors.extend(unpack_bucket(bucket))
    load_weight_tensors(llm, tensors, reset_prefix_cache)


def load_weight_tensors(llm, tensors: list[tuple[str, torch.Tensor]], reset_prefix_cache: bool = True) -> None:
    """Load a full state dict (HF checkpoint names) into the live engine.

    `reload_weights` gets every tensor in one call because vLLM fuses q/k/v and gate/up:
    half of a fused group would leave the other half stale. The prefix cache is reset
    afterwards because cached prefixes hold KV computed with the old weights.

    Tied embeddings: the learner sends each parameter once, so `lm_head.weight` is absent
    when the model ties it to the input embedding. vLLM's reload then skips the head layer
    ("ParallelLMHead: Failed to load weights") and on CPU the head keeps its pre-packed copy
    of the OLD matrix: logits drift from the learner's at every sync. Naming the embedding
    again as `lm_head.weight` (the same tensor, nothing more is sent) makes vLLM load and
    re-pack the head; see docs/weight-sync.md.
    """
    tied = bool(getattr(llm.model_config.hf_text_config, "tie_word_embeddings", False))
    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": with_tied_head(tensors, tied),
                                                  "is_checkpoint_format": True})
    if reset_prefix_cache:
        llm.reset_prefix_cache()


def sample_probe(llm, prompt_ids: list[int], max_tokens: int, seed: int) -> tuple[list[int], list[float]]:
    """The weight-sync probe on the engine side: sample `max_tokens` tokens from a fixed
    prompt at temperature 1 and return them with their logprobs.

    Generation, not teacher forcing, on purpose: it reads cached prefix KV, so a cache left
    over from old weights shows up as a logprob mismatch with the learner.
    """
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(temperature=1.0, max_tokens=max_tokens, seed=seed, logprobs=0, ignore_eos=True)
    o = llm.generate([TokensPrompt(prompt_token_ids=list(prompt_ids))], params, use_tqdm=False)[0].outputs[0]
    return list(o.token_ids), [lp[t].logprob for lp, t in zip(o.logprobs, o.token_ids)]


class _RotaryReloadFilter(logging.Filter):
    """Drops vLLM's "<...>RotaryEmbedding: Failed to load weights" on a live reload.

    Why it is safe: a rotary layer's only tensor is its cos/sin cache, a non-persistent
    buffer computed from the config (rope theta, scaling), never part of a checkpoint. vLLM's
    layer-wise reload counts it as a tensor to load, finds nothing loaded, and keeps the
    existing cache (which is what it should do), but says it failed, on every sync.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == "%s: Failed to load weights" and isinstance(record.args, tuple)
                    and len(record.args) == 1 and str(record.args[0]).endswith("RotaryEmbedding"))


_ROTARY_FILTER = _RotaryReloadFilter()


def _hide_rotary_reload_warning() -> None:
    # Attached to the logger that emits it (not a handler), so it holds wherever vLLM logs go.
    logging.getLogger("vllm.model_executor.model_loader.reload.layerwise").addFilter(_ROTARY_FILTER)

