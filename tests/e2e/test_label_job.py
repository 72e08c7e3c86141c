"""The label job end to end on the tiny labeler: 32 toy pairs in 2 shards through a real Ray
labeler actor (vLLM), Parquet shards with position-debiased preferences, resume by shard, and
the labeler's alignment with the toy rule's choice."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from rlaif_ray.driver.label import SHARD_COLUMNS, label_run
from toy.pairs import make_toy_pairs, write_toy_pairs_jsonl


@pytest.mark.slow
def test_label_job_shards_resumes_and_aligns(ray_local, make_config, tmp_path):
    pairs_file = write_toy_pairs_jsonl(tmp_path / "pairs.jsonl", 32, seed=0, split="heldout")
    out = tmp_path / "labels"
    cfg = make_config(f"label.source={pairs_file}", "label.human_choice_column=human_choice",
                      f"label.output_dir={out}", "label.shard_size=16", "labeler.num_actors=1", verb="label")

    first = label_run(cfg, progress=False)
    shards = sorted(out.glob("shard-*.parquet"))
    assert [p.name for p in shards] == ["shard-00000.parquet", "shard-00001.parquet"]
    assert (first["labeled_pairs"], first["skipped_shards"], first["n_pairs"]) == (32, 0, 32)

    rows = {k: [] for k in SHARD_COLUMNS}
    for path in shards:
        t = pq.read_table(path)
        assert tuple(t.column_names) == SHARD_COLUMNS and t.num_rows == 16
        for k, v in t.to_pydict().items():
            rows[k].extend(v)
    expected = make_toy_pairs(32, seed=0, split="heldout")
    assert rows["pair_index"] == list(range(32))
    assert rows["context"] == [p["context"] for p in expected]
    assert rows["response_a"] == [p["response_a"] for p in expected]
    assert rows["human_choice"] == [p["human_choice"] for p in expected]
    p_a, p_ab, p_ba = (np.array(rows[k]) for k in ("p_a", "p_ab", "p_ba"))
    for p in (p_a, p_ab, p_ba):
        assert np.all((p >= 0) & (p <= 1)) and np.isfinite(p).all()
    np.testing.assert_allclose(p_a, (p_ab + 1 - p_ba) / 2, atol=1e-12)
    assert rows["rationale_ab"] == [""] * 32  # no chain of thought

    # The summary is computed from the shards and matches them.
    human = np.array(rows["human_choice"])
    align = np.mean(np.where(human == 0, p_a > 0.5, p_a < 0.5))
    consistent = np.mean((p_ab - 0.5) * (0.5 - p_ba) > 0)
    print(f"toy labels: mean P(A) {p_a.mean():.3f}, position consistency {consistent:.3f}, "
          f"alignment with the rule {align:.3f} (tiny labeler held-out pairwise accuracy ~0.76)")
    assert first["labeler_alignment"] == pytest.approx(align)
    assert first["position_consistency"] == pytest.approx(consistent)
    assert first["mean_p_a"] == pytest.approx(p_a.mean())
    assert first["n_human"] == 32 and first["labeler_alignment"] > 0.5
    assert json.loads((out / "summary.json").read_text())["labeler_alignment"] == pytest.approx(align)

    # A re-run labels nothing and leaves the shards untouched.
    mtimes = {p.name: p.stat().st_mtime_ns for p in shards}
    second = label_run(cfg, progress=False)
    assert (second["labeled_pairs"], second["skipped_shards"]) == (0, 2)
    assert {p.name: p.stat().st_mtime_ns for p in shards} == mtimes
    assert second["labeler_alignment"] == pytest.approx(first["labeler_alignment"])

    # Lose one shard: only that one is labeled again, with the same labels.
    (out / "shard-00001.parquet").unlink()
    third = label_run(cfg, progress=False)
    assert (third["labeled_pairs"], third["skipped_shards"]) == (16, 1)
    assert (out / "shard-00000.parquet").stat().st_mtime_ns == mtimes["shard-00000.parquet"]
    redone = pq.read_table(out / "shard-00001.parquet").to_pydict()
    np.testing.assert_allclose(redone["p_a"], rows["p_a"][16:], atol=1e-5)
    assert third["labeler_alignment"] == pytest.approx(first["labeler_alignment"], abs=1e-6)
