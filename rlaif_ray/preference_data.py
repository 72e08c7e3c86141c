"""Preference-pair datasets in one shape, and Reddit TL;DR prompts for PPO.

Every loader returns a list of pair records

    {"context": str, "response_a": str, "response_b": str, "human_choice": 0 | 1 | None}

``human_choice`` is the index of the response a human preferred (0: A, 1: B; None: no
human label), the convention of `rlaif_ray.metrics.labeler_alignment`. Formats
(``label.format``):

- ``generic``: one record per pair, the columns named by ``label.*_column``.
- ``summarize_from_feedback``: OpenAI's comparisons (Stiennon et al. 2020):
  ``info.post`` (or ``info.article``) with ``info.title``/``info.subreddit``,
  ``summaries[i].text``, ``choice``. The context is the TL;DR post block
  (``tldr_context``); summaries lose their leading space.
- ``hh_rlhf``: Anthropic HH-RLHF ``chosen``/``rejected`` dialogues. The shared part up to
  the last shared "\\n\\nAssistant:" is the context, what follows it in each dialogue is a
  response. Chosen is shown as A or B by a coin seeded with ``label.seed`` (the labeler
  must not learn that "A wins"); ``human_choice`` records where it went.

Sources: a local .jsonl/.json/.parquet file or a directory of Parquet (read without
`datasets`, so errors can name the line), or an HF dataset name (needs a hub).

PPO prompts from Reddit TL;DR (e.g. OpenAI's ``tldr_3_filtered`` jsonl with
subreddit/title/post): ``write_tldr_prompts_jsonl(source, "tldr.jsonl")`` writes
``{"prompt": "SUBREDDIT: r/...\\nTITLE: ...\\nPOST: ...\\nTL;DR:"}`` lines; point the run at
them with ``data: {source: tldr.jsonl, prompt_column: prompt, max_prompt_tokens: 512}``
and ``labeler: {task: summarization}``.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from rlaif_ray.config import LabelSection
from rlaif_ray.data import DataError, read_local_rows

PAIR_COLUMNS = ("context", "response_a", "response_b", "human_choice")
HH_ASSISTANT = "\n\nAssistant:"
"""The turn marker of HH-RLHF dialogues; the responses follow the last shared one."""


# --------------------------------------------------------------------------- reading


def read_records(source: str, split: str = "train", subset: str | None = None) -> list[dict]:
    """Rows of a local .jsonl/.json/.parquet file or Parquet directory (read as prompts are,
    `rlaif_ray.data.read_local_rows`: a bad file names the line or record), or an HF dataset."""
    path = Path(source)
    if path.exists():
        return [row for _, row in read_local_rows(path, "label.source")]
    if "/" in source and not source.startswith((".", "/", "~")):
        import datasets

        return [dict(r) for r in datasets.load_dataset(source, subset, split=split)]
    raise DataError(f"label.source: {source}: no such file or directory")


# --------------------------------------------------------------------------- formats


def _choice(value: Any, where: str) -> int | None:
    """0/1 (bools and 0.0/1.0 accepted) or None; anything else names the record."""
    if value is None:
        return None
    if isinstance(value, (bool, int, float)) and value in (0, 1):
        return int(value)
    raise DataError(f"{where}: human choice must be 0 (A), 1 (B) or null, got {value!r}")


def _text(record: dict, column: str, where: str) -> str:
    if column not in record:
        raise DataError(f"{where} has no column {column!r} (columns: {', '.join(map(str, record))})")
    value = record[column]
    if not isinstance(value, str):
        raise DataError(f"{where}: column {column!r} must be text, got {type(value).__name__}")
    return value


def pairs_from_generic(records: list[dict], context_column: str = "context", response_a_column: str = "response_a",
                       response_b_column: str = "response_b", human_choice_column: str | None = None,
                       name: str = "pairs") -> list[dict]:
    """One pair per record, from the named columns (``human_choice_column`` None: no human labels)."""
    out = []
    for i, r in enumerate(records):
        where = f"{name} record {i}"
        pair = {"context": _text(r, context_column, f"label.context_column: {where}"),
                "response_a": _text(r, response_a_column, f"label.response_a_column: {where}"),
                "response_b": _text(r, response_b_column, f"label.response_b_column: {where}"),
                "human_choice": None}
        if human_choice_column is not None:
            if human_choice_column not in r:
                raise DataError(f"label.human_choice_column: {where} has no column {human_choice_column!r} "
                                f"(columns: {', '.join(map(str, r))})")
            pair["human_choice"] = _choice(r[human_choice_column], f"label.human_choice_column: {where}")
        out.append(pair)
    return out


def tldr_context(post: str, title: str | None = None, subreddit: str | None = None) -> str:
    """The Reddit TL;DR post block: "SUBREDDIT: r/<s>\\nTITLE: <t>\\nPOST: <p>" (missing parts left out)."""
    lines = []
    if subreddit:
        lines.append(f"SUBREDDIT: r/{subreddit}")
    if title:
        lines.append(f"TITLE: {title}")
    lines.append(f"POST: {post.strip()}")
    return "\n".join(lines)


def tldr_prompt(record: dict, where: str = "record") -> str:
    """A PPO prompt from a TL;DR record (top-level subreddit/title/post, or under ``info``):
    ``tldr_context(...) + "\\nTL;DR:"``."""
    info = record.get("info") if isinstance(record.get("info"), dict) else record
    post = info.get("post")
    if not isinstance(post, str):
        raise DataError(f"{where}: a TL;DR record needs a text 'post' (keys: {', '.join(map(str, info))})")
    return tldr_context(post, info.get("title"), info.get("subreddit")) + "\nTL;DR:"


def _summary_texts(summaries: Any, where: str) -> list[str]:
    # HF `datasets` may hand a list of structs back as a struct of lists.
    if isinstance(summaries, dict) and isinstance(summaries.get("text"), list):
        texts = summaries["text"]
    elif isinstance(summaries, list) and all(isinstance(s, dict) for s in summaries):
        texts = [s.get("text") for s in summaries]
    else:
        raise DataError(f"{where}: 'summaries' must be a list of {{text: ...}}, got {type(summaries).__name__}")
    if len(texts) != 2 or not all(isinstance(t, str) for t in texts):
        raise DataError(f"{where}: 'summaries' must hold exactly two texts, got {texts!r:.120}")
    return [t.strip() for t in texts]


def pairs_from_summarize_feedback(records: list[dict], name: str = "pairs") -> list[dict]:
    """OpenAI summarize-from-feedback comparisons → pairs; A/B in the dataset's order."""
    out = []
    for i, r in enumerate(records):
        where = f"label.source: {name} record {i}"
        info = r.get("info")
        if not isinstance(info, dict):
            raise DataError(f"{where} has no 'info' object (columns: {', '.join(map(str, r))})")
        post = info.get("post") or info.get("article")
        if not isinstance(post, str):
            raise DataError(f"{where}: info has no text 'post' or 'article' (keys: {', '.join(map(str, info))})")
        a, b = _summary_texts(r.get("summaries"), where)
        out.append({"context": tldr_context(post, info.get("title"), info.get("subreddit")),
                    "response_a": a, "response_b": b, "human_choice": _choice(r.get("choice"), where)})
    return out


def split_hh_dialogue(chosen: str, rejected: str, where: str = "record") -> tuple[str, str, str]:
    """(context, chosen response, rejected response) of one HH-RLHF record.

    The cut is the last "\\n\\nAssistant:" inside the dialogues' common prefix; the context
    is what precedes it, each response what follows it (stripped).
    """
    shared = len(os.path.commonprefix([chosen, rejected]))
    cut = chosen.rfind(HH_ASSISTANT, 0, shared)
    if cut < 0:
        raise DataError(f"{where}: 'chosen' and 'rejected' share no {HH_ASSISTANT!r} turn")
    start = cut + len(HH_ASSISTANT)
    return chosen[:cut].strip(), chosen[start:].strip(), rejected[start:].strip()


def pairs_from_hh_rlhf(records: list[dict], seed: int = 0, name: str = "pairs") -> list[dict]:
    """HH-RLHF → pairs; chosen goes to A or B by a fair coin (``random.Random(seed)``, one draw
    per record in order), ``human_choice`` = 0 where it went to A, 1 where to B."""
    rng = random.Random(f"hh-rlhf/{seed}")
    out = []
    for i, r in enumerate(records):
        where = f"label.source: {name} record {i}"
        context, chosen, rejected = split_hh_dialogue(_text(r, "chosen", where), _text(r, "rejected", where), where)
        if rng.random() < 0.5:
            out.append({"context": context, "response_a": chosen, "response_b": rejected, "human_choice": 0})
        else:
            out.append({"context": context, "response_a": rejected, "response_b": chosen, "human_choice": 1})
    return out


def load_pairs(label: LabelSection) -> list[dict]:
    """The pairs of a label run: read ``label.source``, keep ``label.max_pairs``, map ``label.format``."""
    records = read_records(label.source, label.split, label.subset)
    if label.max_pairs is not None:
        records = records[: label.max_pairs]
    if not records:
        raise DataError(f"label.source: {label.source} holds no records")
    name = label.source
    if label.format == "summarize_from_feedback":
        return pairs_from_summarize_feedback(records, name)
    if label.format == "hh_rlhf":
        return pairs_from_hh_rlhf(records, label.seed, name)
    return pairs_from_generic(records, label.context_column, label.response_a_column, label.response_b_column,
                              label.human_choice_column, name)


def write_tldr_prompts_jsonl(source: str, out: str | Path, split: str = "train", subset: str | None = None,
                             max_prompts: int | None = None) -> Path:
    """Write ``{"prompt": tldr_prompt(record)}`` lines for PPO's ``data.source``; returns ``out``."""
    records = read_records(source, split, subset)[:max_prompts]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for i, r in enumerate(records):
            f.write(json.dumps({"prompt": tldr_prompt(r, f"{source} record {i}")}) + "\n")
    return out


# --------------------------------------------------------------------------- label statistics


def position_consistency(p_ab: list[float], p_ba: list[float]) -> float:
    """Fraction of pairs whose two orders name the same winner.

    Order AB votes A when p_ab > 0.5; order BA (B shown first) votes A when p_ba < 0.5.
    Consistent: (p_ab − 0.5)·(0.5 − p_ba) > 0; a 0.5 in either order names no winner and
    counts as inconsistent.
    """
    if not p_ab or len(p_ab) != len(p_ba):
        raise ValueError(f"p_ab and p_ba must be equally long and non-empty, got {len(p_ab)} and {len(p_ba)}")
    return sum((x - 0.5) * (0.5 - y) > 0 for x, y in zip(p_ab, p_ba)) / len(p_ab)


def label_stats(p_a: list[float], p_ab: list[float], p_ba: list[float], human: list[int | None]) -> dict:
    """Mean P(A), position consistency, and labeler alignment over the pairs with a human choice."""
    from rlaif_ray.metrics import labeler_alignment

    labeled = [(p, h) for p, h in zip(p_a, human) if h is not None]
    return {
        "n_pairs": len(p_a),
        "mean_p_a": sum(p_a) / len(p_a),
        "position_consistency": position_consistency(p_ab, p_ba),
        "n_human": len(labeled),
        "labeler_alignment": (labeler_alignment([p for p, _ in labeled], [h for _, h in labeled])
                              if labeled else None),
    }
