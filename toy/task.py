"""The toy RLAIF task: describe a thing, and be *bright* about it.

Prompts ask about a noun ("Tell me about the river."); responses are one short sentence
built from a fixed word list ("The river is grey and sunny."). The hidden ground truth a
labeler is trained to imitate (``rule_score``) is the share of the response's adjectives
that come from the BRIGHT set rather than the DULL set:

    adjectives = words of the response that are in BRIGHT ∪ DULL
    f          = #bright adjectives / #adjectives
    score      = 2·f − 1                      ∈ [−1, 1]
    score      = −1  if the response has fewer than MIN_WORDS words or no adjective

A policy moves this score only by *which* adjectives it picks, not by how long it talks:
the fraction does not grow with length, and empty, one-word or adjective-free answers get
the worst score. The SFT corpus that initialises the policy picks each adjective bright
with probability ``SFT_BRIGHT_P`` = 0.3, so the initial policy scores about 2·0.3 − 1
= −0.4 on average, with a wide spread (sentences carry 1–3 adjectives).

``rule_label`` maps the score to the 1..10 grade the AI labeler is trained to give:
label = 1 + round(9·(score + 1)/2), so −1 → 1, 0 → 6 (5.5 rounds half up), 1 → 10.

Everything is a pure function of its seed (``random.Random``, no global RNG), so the
corpus, the tokenizer trained on it and the tiny models are reproducible.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import string
from pathlib import Path
from typing import Literal

Split = Literal["train", "heldout"]

BRIGHT: tuple[str, ...] = (
    "sunny", "bright", "warm", "golden", "cheerful", "glowing",
    "radiant", "lively", "joyful", "sparkling", "vivid", "shining",
)
DULL: tuple[str, ...] = (
    "grey", "dark", "cold", "dull", "gloomy", "dim",
    "bleak", "dreary", "murky", "heavy", "faded", "drab",
)
NOUNS: tuple[str, ...] = (
    "river", "garden", "city", "mountain", "forest", "lake", "house", "road",
    "market", "sea", "sky", "field", "village", "bridge", "train", "library",
    "school", "park", "harbor", "island", "desert", "valley", "kitchen", "castle",
    "festival", "song", "painting", "station", "beach", "tower",
)
THINGS: tuple[str, ...] = ("light", "wind", "sound", "color", "smell", "view")
PLACES: tuple[str, ...] = ("hill", "road", "wall", "shore", "tree", "gate")
TIMES: tuple[str, ...] = ("day", "night", "morning", "evening")
FILLERS: tuple[str, ...] = (
    "the", "a", "is", "and", "with", "very", "it", "we", "saw", "by", "on", "of",
    "felt", "looks", "sits", "near", "in", "quite", "so", "this",
)

PROMPT_TEMPLATES: tuple[str, ...] = (
    "Tell me about the {n}.",
    "Describe the {n}.",
    "What do you think of the {n}?",
    "Write a sentence about the {n}.",
    "How would you describe the {n}?",
    "Say something about the {n}.",
)

# Policy-style responses: {n} noun, {a} an adjective (bright or dull), {t} thing,
# {p} place, {m} time of day. 1–3 adjectives each, so the score has real variance.
RESPONSE_TEMPLATES: tuple[str, ...] = (
    "The {n} is {a} and {a}.",
    "The {n} looks {a}, {a} and {a}.",
    "I think the {n} is very {a}.",
    "It is a {a} {n} with a {a} {t}.",
    "The {a} {n} sits by the {a} {p}.",
    "We saw the {n} on a {a} {m}, and it felt {a}.",
    "The {n} has a {a} {t} and a {a} {t}.",
)

MIN_WORDS = 3
"""Responses with fewer words than this score −1 (no reward for saying nothing)."""
SFT_BRIGHT_P = 0.3
"""Chance that an adjective in the policy's SFT corpus is bright: sets the start score."""
HELDOUT_FRACTION = 0.2
"""Share of the (template, noun) prompt combinations kept for the held-out split."""

_BRIGHT_SET = frozenset(BRIGHT)
_DULL_SET = frozenset(DULL)
_WORD_RE = re.compile(r"[a-z]+")
_FORMATTER = string.Formatter()


def words(text: str) -> list[str]:
    """Lower-cased alphabetic words of ``text`` (punctuation and digits dropped)."""
    return _WORD_RE.findall(text.lower())


def rule_score(response: str) -> float:
    """Ground-truth quality in [−1, 1]: 2·(bright share of the adjectives) − 1.

    −1 when the response has fewer than MIN_WORDS words or no adjective at all.
    """
    ws = words(response)
    if len(ws) < MIN_WORDS:
        return -1.0
    n_bright = sum(w in _BRIGHT_SET for w in ws)
    n_dull = sum(w in _DULL_SET for w in ws)
    if n_bright + n_dull == 0:
        return -1.0
    return 2.0 * n_bright / (n_bright + n_dull) - 1.0


def score_to_label(score: float) -> int:
    """[−1, 1] → 1..10: 1 + round(9·(score+1)/2), halves rounded up."""
    x = 9.0 * (min(max(score, -1.0), 1.0) + 1.0) / 2.0
    return 1 + int(math.floor(x + 0.5))


def rule_label(response: str) -> int:
    """The 1..10 grade the labeler is trained to give ``response``."""
    return score_to_label(rule_score(response))


def label_to_reward(label: float) -> float:
    """Inverse map used by direct RLAIF: 1..10 → 2·(s−1)/9 − 1 ∈ [−1, 1]."""
    return 2.0 * (label - 1.0) / 9.0 - 1.0


# --------------------------------------------------------------------------- prompts


def _prompt_pool(split: Split) -> list[str]:
    """All prompts of a split, in a fixed order (independent of any seed).

    The split is a fixed property of each (template, noun) combination, chosen by a
    seed-free deterministic shuffle, so train and held-out never overlap whatever seed
    a caller samples with.
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    combos = [t.format(n=n) for t in PROMPT_TEMPLATES for n in NOUNS]
    order = list(range(len(combos)))
    random.Random("toy-task-split").shuffle(order)
    n_held = int(round(HELDOUT_FRACTION * len(combos)))
    held = set(order[:n_held])
    return [c for i, c in enumerate(combos) if (i in held) == (split == "heldout")]


def toy_prompts(n: int, seed: int = 0, split: Split = "train") -> list[str]:
    """``n`` prompts of ``split``: seeded shuffles of the split's pool, cycled if n > pool."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    pool = _prompt_pool(split)
    rng = random.Random(f"toy-prompts/{seed}/{split}")
    out: list[str] = []
    while len(out) < n:
        block = pool[:]
        rng.shuffle(block)
        out.extend(block[: n - len(out)])
    return out


def write_toy_prompts_jsonl(path: str | Path, n: int, seed: int = 0,
                            split: Split = "train") -> Path:
    """Write ``toy_prompts(n, seed, split)`` as JSON lines ``{"prompt": ...}``; returns path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for p in toy_prompts(n, seed, split):
            f.write(json.dumps({"prompt": p}) + "\n")
    return path


# The prompt files beside the tiny models, as `rlaif-ray make-tiny-models DIR` writes them and
# the example configs read them: split -> number of prompts.
PROMPT_FILES = {"train": 512, "heldout": 128}


def ensure_prompt_files(folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """FOLDER/prompts-train.jsonl and prompts-heldout.jsonl, written if missing (each whole or
    not at all: written beside, then renamed); returns {"prompts-<split>": path}."""
    paths = {}
    for split, n in PROMPT_FILES.items():
        out = Path(folder) / f"prompts-{split}.jsonl"
        if not out.exists():
            tmp = write_toy_prompts_jsonl(out.with_name(f".{out.name}.tmp-{os.getpid()}"), n, seed=seed, split=split)
            tmp.replace(out)
        paths[f"prompts-{split}"] = out
    return paths


def prompt_noun(prompt: str) -> str:
    """The noun a toy prompt asks about (its last word); 'thing' if none."""
    ws = words(prompt)
    return ws[-1] if ws else "thing"


# ------------------------------------------------------------------------- responses


def _adjective(rng: random.Random, bright_p: float) -> str:
    return rng.choice(BRIGHT) if rng.random() < bright_p else rng.choice(DULL)


def policy_style_response(prompt: str, rng: random.Random,
                          bright_p: float = SFT_BRIGHT_P) -> str:
    """One templated sentence about the prompt's noun; each adjective bright w.p. bright_p."""
    template = rng.choice(RESPONSE_TEMPLATES)
    fields = {"n": prompt_noun(prompt)}
    out = []
    # Fill the template left to right so every {a} gets its own draw.
    for literal, name, _, _ in _FORMATTER.parse(template):
        out.append(literal)
        if name is None:
            continue
        if name == "a":
            out.append(_adjective(rng, bright_p))
        elif name == "n":
            out.append(fields["n"])
        else:
            out.append(rng.choice({"t": THINGS, "p": PLACES, "m": TIMES}[name]))
    return "".join(out)


def random_mix_response(prompt: str, rng: random.Random, bright_p: float) -> str:
    """An unstructured bag of toy words (3–14), adjectives bright w.p. bright_p.

    For the labeler's training data: it must grade word choice, not template shape.
    """
    k = rng.randint(MIN_WORDS, 14)
    pool = FILLERS + THINGS + PLACES + TIMES + (prompt_noun(prompt),)
    ws = []
    for _ in range(k):
        ws.append(_adjective(rng, bright_p) if rng.random() < 0.35 else rng.choice(pool))
    text = " ".join(ws)
    return text[:1].upper() + text[1:] + rng.choice((".", ".", "!", ""))


def degenerate_response(prompt: str, rng: random.Random) -> str:
    """Empty, one- or two-word, or adjective-free answers: all score −1 by the rule."""
    kind = rng.randrange(4)
    if kind == 0:
        return ""
    if kind == 1:
        return rng.choice(BRIGHT + DULL + NOUNS)
    if kind == 2:
        return f"{rng.choice(BRIGHT).capitalize()} {prompt_noun(prompt)}."
    return f"The {prompt_noun(prompt)} is by the {rng.choice(PLACES)}."


def labeler_response(prompt: str, rng: random.Random) -> str:
    """A response drawn to cover the whole score range, for labeler training/eval.

    Mix: 60% policy style with bright_p ~ U(0, 1), 15% policy style that is very bright
    (bright_p ~ U(0.8, 1)), 17% random word mixes, 8% degenerate.
    """
    u = rng.random()
    if u < 0.60:
        return policy_style_response(prompt, rng, bright_p=rng.random())
    if u < 0.75:
        return policy_style_response(prompt, rng, bright_p=rng.uniform(0.8, 1.0))
    if u < 0.92:
        return random_mix_response(prompt, rng, bright_p=rng.random())
    return degenerate_response(prompt, rng)


def sft_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (prompt, response) pairs of the policy's SFT corpus (train prompts only)."""
    rng = random.Random(f"toy-sft/{seed}")
    prompts = toy_prompts(n, seed, "train")
    return [(p, policy_style_response(p, rng)) for p in prompts]


def vocabulary_words() -> tuple[str, ...]:
    """Every word the corpus can use (for tokenizer coverage checks)."""
    return tuple(sorted(set(BRIGHT + DULL + NOUNS + THINGS + PLACES + TIMES + FILLERS)))
