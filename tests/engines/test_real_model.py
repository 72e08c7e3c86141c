"""A real model (SmolLM2-135M-Instruct, the `smollm2` fixture) through the engines, in fp32.

- the fixture is an ordinary Hugging Face folder (plain `from_pretrained`, tied embeddings,
  chat template) that answers like the instruct model it is;
"""

from __future__ import annotations

import os

import pytest
import torch

pytestmark = pytest.mark.slow

# The engine must run in this process; vLLM reads this when it is imported.
os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def hf_model(smollm2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(smollm2)


def chat_ids(tok, question: str) -> list[int]:
    return list(tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                        tokenize=True, return_dict=True)["input_ids"])


@torch.no_grad()
def hf_greedy(model, prompt: list[int], n: int) -> list[int]:
    """n greedy tokens, never stopping at eos (like the engines' `ignore_eos`)."""
    ids = torch.tensor([prompt])
    for _ in range(n):
        ids = torch.cat([ids, model(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids[0, len(prompt):].tolist()


def test_fixture_is_a_plain_instruct_model(smollm2, hf_model):
    model, tok = hf_model
    assert "quantization_config" not in model.config.to_dict()
    assert model.config.tie_word_embeddings and model.config.num_hidden_layers == 30
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert "<|im_start|>" in tok.chat_template
    answer = tok.decode(hf_greedy(model, chat_ids(tok, QUESTION), 8))
    assert answer.startswith("The capital of France is Paris"), answer
