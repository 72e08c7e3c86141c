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
from rlaif_ray.config import EvalConfig
from rlaif_ray.evaluation import answer_seed
from rlaif_ray.modeling import plan_kv_cache
from rlaif_ray.prompts import formatter_for


class GeneratorActor:
    def __init__(self, cfg: EvalConfig, model_path: str, name: str):
        self.cfg, self.name = cfg, name
        e = cfg.eval.sampling
        tokens = cfg.data.max_prompt_tokens + e.max_new_tokens
        answers_per_engine = -(-cfg.eval.num_prompts // cfg.eval.actors_per_policy)
        kv = plan_kv_cache(model_path, cfg.model.dtype, cfg.rollout.kv_cache_mib, answers_per_engine, tokens,
                           cfg.model.trust_remote_code)
        self.llm = build_llm(model_path, cfg.model, kv.mib, cfg.rollout.gpu_memory_utilization,
                             seed=cfg.run.seed, max_model_len=tokens)
        self.tokenizer = self.llm.get_tokenizer()
        # The same formatting as in training (chat template, system prompt, truncation).
        self.formatter = formatter_for(self.tokenizer, cfg.data, model_path)

    def ping(self) -> str:
        return self.name

    def answer(self, items: list[tuple[int, object]], side: int) -> dict:
        """Answer each (position, prompt record: text or chat messages), formatted like in
        training; prompts over data.max_prompt_tokens are truncated the same way.

        Returns {"answers": [{"position", "response", "tokens", "finished"}], "truncated",
        "seconds"}; `finished` is False when the answer hit max_new_tokens.
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        start = time.perf_counter()
        e, limit = self.cfg.eval.sampling, self.cfg.data.max_prompt_tokens
        requests, params, truncated = [], [], 0
        for position, record in items:
            enc = self.formatter.encode(record, limit)
            if enc is None:
                raise ValueError(f"eval prompt {position}: the chat template alone is longer than "
                                 f"data.max_prompt_tokens ({limit})")
            truncated += enc.truncated
            requests.append(TokensPrompt(prompt_token_ids=list(enc.token_ids)))
            params.append(SamplingParams(
                n=1, temperature=e.temperature, top_p=e.top_p if e.temperature > 0 else 1.0,
                max_tokens=e.max_new_tokens, stop=e.stop or None,
                seed=answer_seed(self.cfg.run.seed, side, position) if e.temperature > 0 else None))
        outs = self.llm.generate(requests, params, use_tqdm=False) if requests else []
        answers = [{"position": pos, "response": o.outputs[0].text, "tokens": len(o.outputs[0].token_ids),
                    "finished": o.outputs[0].finish_reason == "stop"} for (pos, _), o in zip(items, outs)]
        return {"answers": answers, "truncated": truncated, "seconds": time.perf_counter() - start}
