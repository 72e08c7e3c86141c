"""vLLM engine construction and live weight loading, shared by the rollout and labeler actors."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import ray
import torch

from rlaif_ray.config import ModelSection
from rlaif_ray.modeling import CPU_KV_BLOCK_TOKENS, max_positions


@dataclass(frozen=True)
class EngineSpec:
    """Everything an in-process vLLM engine is built from. Two engines of equal specs are
    interchangeable once their weights are reset: a run that finds a kept pool of equal specs
    (rlaif_ray.driver.warm) takes it instead of building new engines."""

    model_path: str
    dtype: str
    trust_remote_code: bool
    kv_cache_mib: int
    gpu_memory_utilization: float
    seed: int
    max_model_len: int
    worker_extension_cls: str | None = None

    def build(self):
        """The engine.

        `worker_extension_cls` (a qualname, e.g. `rlaif_ray.weight_sync.nccl.WeightGroupExtension`)
        is mixed into every vLLM worker, for `collective_rpc` calls such as the NCCL weight group's.

        Engine env vars are set here and only here, because vLLM reads them at import:
        - VLLM_ENABLE_V1_MULTIPROCESSING=0 keeps the engine core in this actor's process
          (~3 s to build instead of 20-30 s, and weights can be passed as tensors).
        """
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        on_gpu = torch.cuda.is_available() and bool(ray.get_gpu_ids())
        kwargs = dict(
            model=self.model_path, tokenizer=self.model_path, dtype=self.dtype, seed=self.seed,
            trust_remote_code=self.trust_remote_code, max_model_len=self.max_model_len,
            # processed logprobs describe the tempered distribution actually sampled from;
            # the learner divides its logits by the same temperature.
            logprobs_mode="processed_logprobs",
        )
        if on_gpu:
            kwargs["gpu_memory_utilization"] = self.gpu_memory_utilization
        else:
            # Compiled mode recompiles at every start (20-50 s) for ~15% speed: not worth it on CPU.
            kwargs["enforce_eager"] = True
            # Without an explicit size one CPU engine claims most of the machine's RAM.
            kwargs["kv_cache_memory_bytes"] = self.kv_cache_mib * 2**20
            kwargs["block_size"] = CPU_KV_BLOCK_TOKENS
            _no_sampler_compile()
        if self.worker_extension_cls:
            kwargs["worker_extension_cls"] = self.worker_extension_cls
        _hide_rotary_reload_warning()
        return LLM(**kwargs)


def engine_spec(model_path: str, model: ModelSection, kv_cache_mib: int, gpu_memory_utilization: float,
                seed: int, max_model_len: int, worker_extension_cls: str | None = None) -> EngineSpec:
    """The spec of an engine of `model_path` with the model section's dtype and trust setting;
    the context is capped at what the model's positions allow."""
    max_model_len = min(max_model_len, max_positions(model_path, model.trust_remote_code))
    return EngineSpec(model_path, model.dtype, model.trust_remote_code, kv_cache_mib, gpu_memory_utilization,
                      seed, max_model_len, worker_extension_cls)


def build_llm(model_path: str, model: ModelSection, kv_cache_mib: int, gpu_memory_utilization: float,
              seed: int, max_model_len: int, worker_extension_cls: str | None = None):
    """An in-process vLLM engine sized from config (`EngineSpec.build`)."""
    return engine_spec(model_path, model, kv_cache_mib, gpu_memory_utilization, seed, max_model_len,
                       worker_extension_cls).build()


def _no_sampler_compile() -> None:
    """Run vLLM's torch.compile'd sampler helpers eagerly on CPU.

    Why: even with `enforce_eager`, vLLM compiles a small logprob-rank helper with Inductor
    the first time an engine returns logprobs: on CPU that is a C++ build costing ~2 s of the
    first `generate` of every engine (rollout and labeler alike). Eager, the helper gives the
    same tokens and logprobs at the same steady speed (docs/performance.md, "The first sampling
    call").
    Process-wide, which is fine: nothing else in an engine's process compiles.
    """
    import torch._dynamo

    torch._dynamo.config.disable = True


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

