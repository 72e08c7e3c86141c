"""A real model (SmolLM2-135M-Instruct, the `smollm2` fixture) through the engines, in fp32.

- the fixture is an ordinary Hugging Face folder (plain `from_pretrained`, tied embeddings,
  chat template) that answers like the instruct model it is;
- vLLM's teacher-forced logprobs of the same sequences equal transformers' to REAL_FP32_TOL
  (measured max |Δ| over the ~100 tokens below: ~1e-5; see test_teacher_forced_logprobs);
- after a PPO-like update of the learner's weights (AdamW steps in transformers) sent through
  the project's sync path (buckets → `rlaif_ray.weight_sync.ends.load_into_engine`), the engine's greedy
  answers equal the learner's token for token and the sync probe reads within its fp32 bound,
  while before the load it read far above it;
- the output head follows an updated embedding (SmolLM2 ties them), and the reload no longer
  logs "ParallelLMHead: Failed to load weights".

The engine is built the way the rollout actors build theirs (`actors.engine.build_llm`).
"""

from __future__ import annotations

import gc
import logging
import os

import pytest
import torch

pytestmark = pytest.mark.slow

# The engine must run in this process; vLLM reads this when it is imported.
os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"

REAL_FP32_TOL = 1e-4  # vLLM vs transformers, fp32, teacher-forced logprobs (measured ≤ ~1e-5)
QUESTION = "What is the capital of France?"
QUESTIONS = [QUESTION, "Name three colours of the rainbow.", "How do I boil an egg?"]
ANSWER = "The capital of France is Paris. It is known for the Eiffel Tower, its museums and its cafés."
PLAIN_TEXT = "Gardening in spring: sow peas early, water the seedlings, and watch for slugs after rain."
UPDATE_TEXTS = [
    "<|im_start|>user\nName a fruit.<|im_end|>\n<|im_start|>assistant\nA pear is a sweet fruit.<|im_end|>\n",
    "<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\nHello! How can I help you today?<|im_end|>\n",
]


@pytest.fixture(scope="module")
def hf_model(smollm2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(smollm2)


@pytest.fixture(scope="module")
def initial_weights(hf_model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in hf_model[0].named_parameters()}


@pytest.fixture(scope="module")
def engine(smollm2):
    pytest.importorskip("vllm")
    from actors.engine import build_llm
    from rlaif_ray.config import ModelSection

    llm = build_llm(str(smollm2), ModelSection(policy=str(smollm2), labeler=str(smollm2), dtype="float32"),
                    kv_cache_mib=256, gpu_memory_utilization=0.5, seed=0, max_model_len=512)
    yield llm
    del llm
    gc.collect()


def chat_ids(tok, question: str, answer: str | None = None) -> list[int]:
    messages = [{"role": "user", "content": question}] + ([{"role": "assistant", "content": answer}] if answer else [])
    return list(tok.apply_chat_template(messages, add_generation_prompt=answer is None, tokenize=True,
                                        return_dict=True)["input_ids"])


@torch.no_grad()
def hf_greedy(model, prompt: list[int], n: int) -> list[int]:
    """n greedy tokens, never stopping at eos (like the engines' `ignore_eos`)."""
    ids = torch.tensor([prompt])
    for _ in range(n):
        ids = torch.cat([ids, model(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids[0, len(prompt):].tolist()


@torch.no_grad()
def hf_token_logprobs(model, ids: list[int]) -> torch.Tensor:
    """(T-1,) log P(ids[t] | ids[:t]) for t ≥ 1."""
    logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
    return logp[:-1].gather(1, torch.tensor(ids[1:])[:, None])[:, 0]


def engine_token_logprobs(llm, ids: list[int]) -> torch.Tensor:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
    (out,) = llm.generate([TokensPrompt(prompt_token_ids=ids)], params, use_tqdm=False)
    return torch.tensor([out.prompt_logprobs[t][ids[t]].logprob for t in range(1, len(ids))])


def engine_greedy(llm, prompts: list[list[int]], n: int) -> list[list[int]]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True)
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
    return [list(o.outputs[0].token_ids) for o in outs]


def sync(llm, model) -> None:
    """The learner's weights to the live engine by the object-store sync's path, minus Ray:
    named_parameters → bucket plan → wire bytes → unpacked views → `load_into_engine` (+ prefix-cache reset)."""
    from rlaif_ray.weight_sync.ends import load_into_engine
    from rlaif_ray.weight_sync.format import wire_round_trip

    load_into_engine(llm, wire_round_trip([(n, p.detach()) for n, p in model.named_parameters()], 64 * 2**20))


def probe_reading(llm, model, tok) -> float:
    """The driver's probe (`sync/max_logprob_diff`) between this engine and this learner."""
    from rlaif_ray.weight_sync.probe import PROBE_NEW_TOKENS, engine_sample, learner_logprobs, probe_prompt

    prompt = probe_prompt(tok)
    tokens, engine_logp = engine_sample(llm, prompt, PROBE_NEW_TOKENS, seed=0)
    learner_logp = learner_logprobs(model, prompt, tokens)
    return float((torch.tensor(engine_logp) - torch.tensor(learner_logp)).abs().max())


def restore(model, weights: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(weights[n])


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# --------------------------------------------------------------------------- tests


def test_fixture_is_a_plain_instruct_model(smollm2, hf_model):
    model, tok = hf_model
    assert "quantization_config" not in model.config.to_dict()
    assert model.config.tie_word_embeddings and model.config.num_hidden_layers == 30
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert "<|im_start|>" in tok.chat_template
    answer = tok.decode(hf_greedy(model, chat_ids(tok, QUESTION), 8))
    assert answer.startswith("The capital of France is Paris"), answer


def test_teacher_forced_logprobs_match_hf(engine, hf_model, initial_weights):
    model, tok = hf_model
    restore(model, initial_weights)
    sync(engine, model)
    worst = 0.0
    for ids in (chat_ids(tok, QUESTION, ANSWER), tok(PLAIN_TEXT)["input_ids"]):
        hf, got = hf_token_logprobs(model, ids), engine_token_logprobs(engine, ids)
        worst = max(worst, float((got - hf).abs().max()))
        torch.testing.assert_close(got, hf, atol=REAL_FP32_TOL, rtol=0)
    print(f"SmolLM2 fp32: max |vLLM - HF| teacher-forced logprob = {worst:.1e}")


def test_greedy_and_probe_agree_after_update_and_sync(engine, hf_model, initial_weights):
    from rlaif_ray.config import SyncSection

    model, tok = hf_model
    restore(model, initial_weights)
    sync(engine, model)
    # A PPO-sized update of the learner: AdamW moves every weight by ~lr per step.
    batch = tok(UPDATE_TEXTS, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0)
    model.train()
    for _ in range(3):
        model(**batch, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    model.eval()
    bound = SyncSection().probe_bound_for("float32")
    stale = probe_reading(engine, model, tok)  # engine still on the old weights
    sync(engine, model)
    fresh = probe_reading(engine, model, tok)
    prompts = [chat_ids(tok, q) for q in QUESTIONS]
    learner = [hf_greedy(model, p, 16) for p in prompts]
    print(f"probe before the sync {stale:.1e}, after {fresh:.1e} (bound {bound:.0e})")
    assert stale > bound, "the update did not move the weights enough to be seen"
    assert fresh <= bound
    assert engine_greedy(engine, prompts, 16) == learner
    restore(model, initial_weights)


def test_tied_head_follows_updated_embedding_without_warning(engine, hf_model, initial_weights):
    """SmolLM2 ties lm_head to embed_tokens and the learner sends the pair once (as
    `model.embed_tokens.weight`); after the load the engine's logits must use the new matrix
    as output head too, and vLLM must not report a layer that failed to load."""
    model, tok = hf_model
    restore(model, initial_weights)
    sync(engine, model)
    ids = chat_ids(tok, QUESTION, ANSWER)
    before = engine_token_logprobs(engine, ids)
    gen = torch.Generator().manual_seed(0)
    emb = model.model.embed_tokens.weight
    with torch.no_grad():
        emb.add_(0.2 * emb.std() * torch.randn(emb.shape, generator=gen))
    assert "lm_head.weight" not in dict(model.named_parameters())
    reload_log = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
    records = _Records()
    reload_log.addHandler(records)
    try:
        sync(engine, model)
    finally:
        reload_log.removeHandler(records)
    after, hf = engine_token_logprobs(engine, ids), hf_token_logprobs(model, ids)
    assert float((after - before).abs().max()) > 0.1, "the perturbation should matter"
    torch.testing.assert_close(after, hf, atol=REAL_FP32_TOL, rtol=0)
    assert not [m for m in records.messages if "Failed to load" in m], records.messages
    restore(model, initial_weights)
    sync(engine, model)
