"""Toy preference pairs in the schema `rlaif-ray label` writes (for the RM, DPO and reward-source tests).

Pairs come from `toy.pairs.make_toy_pairs`; the AI label is stood in for by the
toy rule itself, softened: p_a = 0.5 + (s_A − s_B)/4 ∈ [0, 1] (never 0.5: pairs have a strict
winner). Responses get the leading space the tiny policy generates after a prompt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def labeled_toy_rows(n: int, seed: int = 0) -> list[dict]:
    from toy.pairs import make_toy_pairs

    rows = []
    for p in make_toy_pairs(n, seed):
        p_a = 0.5 + (p["score_a"] - p["score_b"]) / 4
        rows.append({"context": p["context"], "response_a": " " + p["response_a"], "response_b": " " + p["response_b"],
                     "p_a": p_a, "p_ab": p_a, "p_ba": 1 - p_a, "rationale_ab": "", "rationale_ba": "",
                     "human_choice": p["human_choice"]})
    return rows


def write_labeled_toy_pairs(folder: Path, n: int, seed: int = 0, shards: int = 2) -> Path:
    """n labeled toy pairs as `shards` Parquet files shard-NNNNN.parquet in `folder`; returns it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = labeled_toy_rows(n, seed)
    for k, idx in enumerate(np.array_split(np.arange(n), shards)):
        pq.write_table(pa.Table.from_pylist([rows[i] for i in idx]), folder / f"shard-{k:05d}.parquet")
    return folder
