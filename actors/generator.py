"""Answer generator: one vLLM engine of a fixed policy, for evaluation.

Distribution: a pool per evaluated policy (`eval.actors_per_policy` engines); the driver gives
each engine a slice of the held-out prompts and gets back small answer records (text only).

Why not `RolloutActor`: evaluation needs greedy answers that stop at eos and any policy
folder, with no weight versions or per-token arrays; a rollout engine samples at T > 0 and
builds training shards.
"""

from __future__ import annotations

import time

from actors.engine import build_llm
from rlaif_ray.config import RunConfig
from rlaif_ray.evaluation import answer_seed


class GeneratorActor:
    def __init__(self, cfg: RunConfig, model_path: str, name: str):
        self.cfg, self.name = cfg, name
        e = cfg.eval.sampling
        self.llm = build_llm(model_path, cfg.model, cfg.rollout.kv_cache_mib, cfg.rollout.gpu_memory_utilization,
                             seed=cfg.run.seed, max_model_len=cfg.data.max_prompt_tokens + e.max_new_tokens)
        self.tokenizer = self.llm.get_tokenizer()

    def ping(self) -> str:
        return self.name

    def answer(self, items: list[tuple[int, str]], side: int) -> dict:
        """Answer each (position, prompt text); prompts over data.max_prompt_tokens keep their end.

        Returns {"answers": [{"position", "response", "tokens", "finished"}], "truncated",
        "seconds"}; `finished` is False when the answer hit max_new_tokens.
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        start = time.perf_counter()
        e, limit = self.cfg.eval.sampling, self.cfg.data.max_prompt_tokens
        requests, params, truncated = [], [], 0
        for position, text in items:
            ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
            if len(ids) > limit:
                ids, truncated = ids[-limit:], truncated + 1
            requests.append(TokensPrompt(prompt_token_ids=list(ids)))
            params.append(SamplingParams(
                n=1, temperature=e.temperature, top_p=e.top_p if e.temperature > 0 else 1.0,
                max_tokens=e.max_new_tokens, stop=e.stop or None,
                seed=answer_seed(self.cfg.run.seed, side, position) if e.temperature > 0 else None))
        outs = self.llm.generate(requests, params, use_tqdm=False) if requests else []
        answers = [{"position": pos, "response": o.outputs[0].text, "tokens": len(o.outputs[0].token_ids),
                    "finished": o.outputs[0].finish_reason == "stop"} for (pos, _), o in zip(items, outs)]
        return {"answers": answers, "truncated": truncated, "seconds": time.perf_counter() - start}
