"""The byte-level BPE tokenizer every tiny model shares, trained on the toy texts.

``<pad>`` 0, ``<s>`` 1, ``</s>`` 2; encoding prepends ``<s>``. Saved in HF format in each
model folder, it must reload through plain ``AutoTokenizer`` and split text exactly as the
tokenizer the models were trained with (``check_tokenizer_reload``).
"""

from __future__ import annotations

from pathlib import Path

from rlaif_ray.labeler import (
    PREAMBLES,
    TASKS,
    build_cot_prompt,
    build_direct_prompt,
    build_pairwise_prompt,
    direct_candidate_strings,
)
from toy.task import sft_pairs
from toy.models.data import labeler_examples

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>")  # ids 0, 1, 2 in this order
VOCAB_SIZE = 1536
MAX_POSITIONS = 512
"""Longest sequence: the tokenizer's model_max_length and the models' position count."""


def tokenizer_corpus(seed: int = 0) -> list[str]:
    """The texts the BPE tokenizer is trained on: SFT pairs and labeler prompts+answers."""
    texts = [p + " " + r for p, r in sft_pairs(2000, seed)]
    texts += [q + a for q, a in labeler_examples(2000, seed, "train")]
    # Every task's and preamble's template (a few times each, so BPE merges their words):
    # prompts for other tasks, detailed preambles and chain of thought stay compact.
    for task in TASKS:
        for preamble in PREAMBLES:
            texts += [build_direct_prompt("x", "y", task=task, preamble=preamble),
                      build_pairwise_prompt("x", "y", "z", task=task, preamble=preamble),
                      build_cot_prompt("x", "y", task=task, preamble=preamble),
                      build_cot_prompt("x", "y", "z", kind="pairwise", task=task,
                                       preamble=preamble)] * 5
    texts += [c for c in direct_candidate_strings() for _ in range(50)]
    return texts


def train_tokenizer(seed: int = 0, vocab_size: int = VOCAB_SIZE):
    """A byte-level BPE ``PreTrainedTokenizerFast`` (bos prepended) trained on the corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tokenizer_corpus(seed), trainer=trainer)
    bos = SPECIAL_TOKENS[1]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
        special_tokens=[(bos, tok.token_to_id(bos))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=SPECIAL_TOKENS[0], bos_token=SPECIAL_TOKENS[1], eos_token=SPECIAL_TOKENS[2],
        model_max_length=MAX_POSITIONS,
    )


def check_tokenizer_reload(folder: Path, tokenizer) -> None:
    """AutoTokenizer must reload the saved tokenizer and split text exactly the same."""
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(folder)
    sample = build_direct_prompt("Tell me about the sea.", " The sea is warm and grey.") + " 10"
    a, b = tokenizer(sample)["input_ids"], again(sample)["input_ids"]
    if a != b or again.decode(b, skip_special_tokens=True) != sample:
        raise RuntimeError(
            f"tokenizer in {folder} reloads as {type(again).__name__} and encodes differently"
        )
