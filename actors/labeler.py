"""AI labeler: a vLLM engine of a larger model that serves direct RLAIF rewards.

Distribution: a pool; the driver hands each actor a slice of the rollout shards' refs
(`direct_rewards` returns an ObjectRef of a (B,) float32 array plus small stats).

Scores are read from teacher-forced logprobs of the candidate strings (" 1" .. " 10" after
"Score (1-10):", or after a chat labeler's answer prefix: `rlaif_ray.labeler.render`), never
by parsing sampled text; candidates of several tokens are scored exactly by the chain rule
(`rlaif_ray.labeler.scores`).
"""

from __future__ import annotations

import time

import numpy as np
import ray
import torch

from actors.engine import EngineSpec, engine_spec
from rlaif_ray.batch import RolloutBatch
from rlaif_ray.config import EvalConfig, LabelConfig, RolesConfig
from rlaif_ray.labeler import candidate_probs, direct_reward, plan_candidate_queries, preference_from_swapped
from rlaif_ray.labeler.render import LabelerPrompts


class LabelerActor:
    def __init__(self, cfg: RolesConfig | LabelConfig | EvalConfig, rank: int, context_tokens: int):
        """`context_tokens`: the engine's context, sized by the verb for what it judges
        (`rlaif_ray.labeler.render.labeler_context_tokens`)."""
        self.name = f"labeler-{rank}"
        self.llm = self.reuse_key(cfg, rank, context_tokens).build()
        self.tokenizer = self.llm.get_tokenizer()
        self.reset(cfg, rank, context_tokens)

    @staticmethod
    def reuse_key(cfg: RolesConfig | LabelConfig | EvalConfig, rank: int, context_tokens: int) -> EngineSpec:
        """What the engine is built from: actors of equal keys are interchangeable after
        `reset` (rlaif_ray.driver.warm)."""
        return engine_spec(cfg.model.labeler, cfg.model, cfg.labeler.kv_cache_mib, cfg.labeler.gpu_memory_utilization,
                           seed=cfg.run.seed, max_model_len=context_tokens)

    def reset(self, cfg: RolesConfig | LabelConfig | EvalConfig, rank: int, context_tokens: int) -> str:
        """Serve a new run: its prompt template and candidates (the engine is the same)."""
        self.cfg = cfg.labeler
        self.prompts = LabelerPrompts(self.cfg, self.tokenizer, cfg.model.labeler)
        self.candidates = [self.prompts.encode_candidate(c) for c in self.prompts.candidates("direct")]
        self.queries = plan_candidate_queries(self.candidates)
        self.pair_candidates = [self.prompts.encode_candidate(c) for c in self.prompts.candidates("pairwise")]
        self.pair_queries = plan_candidate_queries(self.pair_candidates)
        return self.name

    def ping(self) -> str:
        return self.name

    @ray.method(num_returns=2)
    def direct_rewards(self, shard_refs: list) -> tuple[np.ndarray, dict]:
        """RLAIF reward 2·(s−1)/9 − 1, s = Σ i·P(i), for every sample of the given shards."""
        start = time.perf_counter()
        batch = RolloutBatch.concat(ray.get(list(shard_refs)))
        texts = [self.prompts.prompt(p, r, kind="direct") for p, r in zip(batch.prompts, batch.responses)]
        if self.cfg.chain_of_thought:
            texts = [self.prompts.with_rationale(t, r, "direct") for t, r in zip(texts, self._rationales(texts))]
        probs = self.score_candidates([self.prompts.encode(t) for t in texts])   # (B, 10)
        rewards = direct_reward(probs).numpy().astype(np.float32)
        return rewards, {"seconds": time.perf_counter() - start, "actor": self.name}

    def _rationales(self, cot_prompts: list[str]) -> list[str]:
        """Chain of thought, step 1: a greedy rationale of one line after "Rationale:"."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(temperature=0.0, max_tokens=self.cfg.rationale_max_tokens, stop=["\n"])
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=self.prompts.encode(p)) for p in cot_prompts],
                                 params, use_tqdm=False)
        return [o.outputs[0].text for o in outs]

    def pairwise_preferences(self, contexts: list[str], responses_a: list[str], responses_b: list[str]) -> dict:
        """AI preference labels, position-debiased: each pair is judged in both orders.

        Returns lists: `p_a` = P(A preferred) = (p_ab + 1 − p_ba)/2, `p_ab` = P("1") with A
        shown first, `p_ba` = P("1") with B shown first, and `rationale_ab`/`rationale_ba`
        (chain of thought; empty strings otherwise).
        """
        n = len(contexts)
        pairs = list(zip(contexts, responses_a, responses_b)) + list(zip(contexts, responses_b, responses_a))
        texts = [self.prompts.prompt(c, x, y, kind="pairwise") for c, x, y in pairs]
        rationales = [""] * len(texts)
        if self.cfg.chain_of_thought:
            rationales = self._rationales(texts)
            texts = [self.prompts.with_rationale(t, r, "pairwise") for t, r in zip(texts, rationales)]
        probs = self.score_candidates([self.prompts.encode(t) for t in texts], self.pair_candidates, self.pair_queries)
        p_first = probs[:, 0].double()
        p_ab, p_ba = p_first[:n], p_first[n:]
        return {"p_a": preference_from_swapped(p_ab, p_ba).tolist(), "p_ab": p_ab.tolist(), "p_ba": p_ba.tolist(),
                "rationale_ab": rationales[:n], "rationale_ba": rationales[n:]}

    def score_candidates(self, prompt_ids: list[list[int]], candidates=None, queries=None) -> torch.Tensor:
        """(B, C) renormalised probabilities of the candidates after each prompt.

        One engine call per distinct candidate prefix (one in total when every candidate
        is a single token), each batching all B prompts.
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        candidates = candidates or self.candidates
        queries = queries or self.queries
        answers = [dict() for _ in prompt_ids]
        for prefix, next_ids in queries.items():
            params = SamplingParams(max_tokens=1, temperature=1.0, logprob_token_ids=list(next_ids))
            reqs = [TokensPrompt(prompt_token_ids=ids + list(prefix)) for ids in prompt_ids]
            for chunk in range(0, len(reqs), self.cfg.batch_size):
                outs = self.llm.generate(reqs[chunk: chunk + self.cfg.batch_size], params, use_tqdm=False)
                for i, out in enumerate(outs, start=chunk):
                    lp = out.outputs[0].logprobs[0]
                    answers[i][prefix] = {t: lp[t].logprob for t in next_ids}
        return torch.stack([candidate_probs(candidates, a) for a in answers])

