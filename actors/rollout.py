"""Rollout generator: one vLLM engine of the policy.

Distribution: a pool of N of these; the driver gives each a slice of the iteration's prompts
(`generate` returns an ObjectRef of a `RolloutBatch` shard) and, after every PPO update,
the learner's weights (through its weight receiver, `rlaif_ray.weight_sync`).
"""

from __future__ import annotations

import time

import numpy as np
import ray

from actors.engine import EngineSpec, engine_spec
from rlaif_ray.batch import RolloutBatch, build_shard
from rlaif_ray.config import RolesConfig
from rlaif_ray.modeling import plan_kv_cache
from rlaif_ray.weight_sync import make_receiver, probe, worker_extension


class RolloutActor:
    def __init__(self, cfg: RolesConfig, rank: int):
        self.rank = rank
        self.name = f"rollout-{rank}"
        self.llm = self.engine(cfg, rank).build()
        self.tokenizer = self.llm.get_tokenizer()
        self.reset(cfg, rank)

    @staticmethod
    def reuse_key(cfg: RolesConfig, rank: int) -> EngineSpec | None:
        """Actors of equal keys are interchangeable after `reset` (rlaif_ray.driver.warm);
        None: never reused."""
        if cfg.sync.backend != "object_store":  # an NCCL receiver belongs to one run's weight group
            return None
        return RolloutActor.engine(cfg, rank)

    @staticmethod
    def engine(cfg: RolesConfig, rank: int) -> EngineSpec:
        kv = plan_kv_cache(cfg.model.policy, cfg.model.dtype, cfg.rollout.kv_cache_mib, cfg.rollout_sequences_per_call,
                           cfg.rollout_tokens_per_sequence, cfg.model.trust_remote_code)
        return engine_spec(cfg.model.policy, cfg.model, kv.mib, cfg.rollout.gpu_memory_utilization,
                           seed=cfg.run.seed + rank,
                           max_model_len=max(cfg.rollout_tokens_per_sequence,
                                             probe.PROBE_PROMPT_TOKENS + probe.PROBE_NEW_TOKENS),
                           worker_extension_cls=worker_extension(cfg.sync))

    def reset(self, cfg: RolesConfig, rank: int) -> str:
        """Serve a new run: its settings, a receiver at version 0. The engine still holds the
        last run's weights until the run's first push (train_run pushes them for a kept pool)."""
        self.cfg = cfg
        self.receiver = make_receiver(cfg.sync, self.llm, self.name)
        return self.name

    def ping(self) -> str:
        return self.name

    @ray.method(num_returns=2)
    def generate(self, items: list[tuple[int, list[int], str]], policy_version: int) -> tuple[RolloutBatch, dict]:
        """Sample `samples_per_prompt` responses for each (prompt_index, token_ids, text) with
        the weights this engine holds, at least version `policy_version`; each row records
        the version that generated it.

        Each sample gets its own seed derived from (run seed, policy version, prompt index,
        sample index), so a redone prompt (actor failure, resume) reproduces its samples. The
        engine holds a newer version than asked only when it replaced a lost actor while
        batches generated before the newest update were still in flight (pipelined mode).
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if policy_version > self.policy_version:
            raise RuntimeError(f"{self.name} holds weights v{self.policy_version}, asked to generate for v{policy_version}")
        policy_version = self.policy_version
        s = self.cfg.rollout.sampling
        start = time.perf_counter()
        requests, params, keys = [], [], []
        for prompt_index, ids, _text in items:
            for k in range(s.samples_per_prompt):
                seed = _sample_seed(self.cfg.run.seed, policy_version, prompt_index, k)
                requests.append(TokensPrompt(prompt_token_ids=list(ids)))
                params.append(SamplingParams(
                    n=1, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                    max_tokens=s.max_new_tokens, stop=s.stop or None, seed=seed, logprobs=0))
                keys.append((prompt_index, k))
        outs = self.llm.generate(requests, params, use_tqdm=False) if requests else []
        texts = {i: t for i, _, t in items}
        prompt_ids, resp_ids, resp_logp, resp_text = [], [], [], []
        for req, out in zip(requests, outs):
            o = out.outputs[0]
            prompt_ids.append(req["prompt_token_ids"])
            resp_ids.append(list(o.token_ids))
            resp_logp.append([lp[t].logprob for lp, t in zip(o.logprobs, o.token_ids)])
            resp_text.append(o.text)
        shard = build_shard(
            prompt_ids, resp_ids, resp_logp,
            prompt_index=[k[0] for k in keys], sample_index=[k[1] for k in keys],
            prompts=[texts[k[0]] for k in keys], responses=resp_text,
            max_response_len=s.max_new_tokens, policy_version=policy_version,
            meta={"actor": self.name})
        return shard, {"actor": self.name, "seconds": time.perf_counter() - start,
                       "tokens": int(shard.response_lens.sum()), "policy_version": policy_version}

    @property
    def policy_version(self) -> int:
        return self.receiver.version

    def weight_receiver(self, method: str, *args):
        """Run `method` of this engine's weight receiver: the driver end of weight sync calls
        it (rlaif_ray.weight_sync holds the protocol; this actor only holds the receiver)."""
        return getattr(self.receiver, method)(*args)

    def probe(self, prompt_ids: list[int], max_tokens: int, seed: int) -> tuple[list[int], list[float]]:
        """The weight-sync probe's engine end (rlaif_ray.weight_sync.probe)."""
        return probe.engine_sample(self.llm, prompt_ids, max_tokens, seed)

    def generate_greedy(self, prompt_ids: list[list[int]], max_tokens: int) -> list[list[int]]:
        """Greedy continuations (for checks against the learner)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompt_ids], params, use_tqdm=False)
        return [list(o.outputs[0].token_ids) for o in outs]


def _sample_seed(run_seed: int, version: int, prompt_index: int, sample: int) -> int:
    return int(np.random.SeedSequence([run_seed, version, prompt_index, sample]).generate_state(1)[0] & 0x7FFFFFFF)
