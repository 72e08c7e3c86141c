"""The label job: AI preference labels for a dataset of response pairs, written as Parquet shards.

    pairs (label.source) -> shards of label.shard_size -> labeler pool (vLLM), a shard per free
    actor -> pairwise_preferences (both orders) -> output_dir/shard-NNNNN.parquet, atomically

A shard is the unit of work, of writing and of resuming: a re-run skips every shard already
on disk, so a killed job loses at most the shards in flight. `manifest.json` fingerprints
the pairs, the sharding and the labeler settings; a re-run that differs in any of them is
refused rather than mixing two kinds of labels in one folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import deque
from pathlib import Path

from tqdm import tqdm

from actors.labeler import LabelerActor
from rlaif_ray.config import ConfigError, LabelConfig, config_from_dict, read_raw_config
from rlaif_ray.driver.interrupts import stop_if_interrupted
from rlaif_ray.driver.logs import RunLogs
from rlaif_ray.driver.calls import CallPolicy
from rlaif_ray.driver.pools import ActorPool, describe_roles, wait_all_ready
from rlaif_ray.driver.runtime import actor_env, ray_session
from rlaif_ray.labeler.render import LabelerPrompts, labeler_context_tokens
from rlaif_ray.preference_data import label_stats, load_pairs
from rlaif_ray.errors import ActorCodeError, ActorFailed, RunStopped

log = logging.getLogger("rlaif_ray")

SHARD_COLUMNS = ("pair_index", "context", "response_a", "response_b", "p_a", "p_ab", "p_ba",
                 "rationale_ab", "rationale_ba", "human_choice")
# The labeler settings that change a label; a resumed run must match them.
LABEL_SETTINGS = ("task", "preamble", "few_shot", "chain_of_thought", "rationale_max_tokens")


def load_label_config(path: str | Path, overrides: list[str] | None = None) -> LabelConfig:
    """`load_config` for label runs, after refusing the two training fields label configs once
    sized the labeler's context with."""
    raw = read_raw_config(path, overrides)
    _refuse_training_sizes(raw)
    return config_from_dict(raw, str(path), "label")


def _refuse_training_sizes(raw: dict) -> None:
    """Label configs used to size the labeler's context from two training fields; say what
    to write instead rather than ignore them."""
    data, rollout = raw.get("data") or {}, raw.get("rollout") or {}
    sampling = rollout.get("sampling") or {} if isinstance(rollout, dict) else {}
    old = {k: v for k, v in (("data.max_prompt_tokens", data.get("max_prompt_tokens") if isinstance(data, dict) else None),
                             ("rollout.sampling.max_new_tokens", sampling.get("max_new_tokens"))) if v is not None}
    if old:
        total = sum(int(v) for v in old.values()) if len(old) == 2 else None
        then = f"label.max_pair_tokens: {total}" if total else "label.max_pair_tokens (context + both responses, tokens)"
        raise ConfigError(f"{' and '.join(old)}: a label run sizes its labeler's context from label.max_pair_tokens now; "
                          f"remove them and write {then}")


def shard_bounds(n_pairs: int, shard_size: int) -> list[tuple[int, int]]:
    """[lo, hi) pair ranges of the shards: all of shard_size pairs but the last."""
    return [(lo, min(lo + shard_size, n_pairs)) for lo in range(0, n_pairs, shard_size)]


def shard_path(out: Path, k: int) -> Path:
    return out / f"shard-{k:05d}.parquet"


def _manifest(cfg: LabelConfig, pairs: list[dict]) -> dict:
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([p["context"], p["response_a"], p["response_b"], p["human_choice"]]).encode())
    return {"pairs_sha256": h.hexdigest(), "n_pairs": len(pairs), "shard_size": cfg.label.shard_size,
            "labeler": {"model": cfg.model.labeler, "dtype": cfg.model.dtype,
                        **cfg.labeler.model_dump(mode="json", include=set(LABEL_SETTINGS))},
            "source": cfg.label.source, "format": cfg.label.format}


def prepare_output(out: Path, manifest: dict) -> None:
    """Create `out`, or check that the labels already in it are of the same pairs and settings."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".shard-*.tmp-*"):  # left by a killed run, never renamed into place
        stale.unlink()
    path = out / "manifest.json"
    if path.exists():
        old = json.loads(path.read_text())
        differs = [k for k in ("pairs_sha256", "n_pairs", "shard_size", "labeler") if old.get(k) != manifest[k]]
        if differs:
            raise ConfigError(f"label.output_dir: {out} holds labels of different {', '.join(differs)} "
                              f"(was {', '.join(f'{k}={old.get(k)!r:.80}' for k in differs)}); "
                              f"choose a new label.output_dir or delete {out}")
    _write_atomic(path, json.dumps(manifest, indent=2).encode())


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def shard_done(out: Path, k: int, rows: int) -> bool:
    """A shard counts as done when its file reads back with the expected number of rows."""
    import pyarrow.parquet as pq

    path = shard_path(out, k)
    try:
        return path.exists() and pq.read_metadata(path).num_rows == rows
    except Exception:  # unreadable: redo it
        log.warning("%s is unreadable; labeling it again", path)
        return False


def write_shard(out: Path, k: int, lo: int, pairs: list[dict], result: dict) -> Path:
    """One shard's pairs and labels as Parquet: written to a temp file, then renamed into place,
    so a shard file is either complete or absent."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(pairs)
    columns = {"pair_index": pa.array(range(lo, lo + n), pa.int64())}
    for name in ("context", "response_a", "response_b"):
        columns[name] = pa.array([p[name] for p in pairs], pa.string())
    for name in ("p_a", "p_ab", "p_ba"):
        columns[name] = pa.array(result[name], pa.float64())
    for name in ("rationale_ab", "rationale_ba"):
        columns[name] = pa.array(result[name], pa.string())
    columns["human_choice"] = pa.array([p["human_choice"] for p in pairs], pa.int8())
    path = shard_path(out, k)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(pa.table(columns), tmp)
    os.replace(tmp, path)
    return path


def check_labeler_context(cfg: LabelConfig, pairs: list[dict]) -> None:
    """Fail before any actor starts if a pair's labeler prompt would not fit the engine."""
    from rlaif_ray.modeling import load_tokenizer, max_positions

    lc = cfg.labeler
    # The same engine length the labeler actor gets, and the same prompt it builds.
    budget = labeler_context_tokens(lc, cfg.label.max_pair_tokens)
    positions = max_positions(cfg.model.labeler, cfg.model.trust_remote_code)
    context = min(budget, positions)
    tokenizer = load_tokenizer(cfg.model.labeler, cfg.model.trust_remote_code)
    prompts = LabelerPrompts(lc, tokenizer, cfg.model.labeler)
    # After the prompt: the longest label, or (chain of thought) a rationale, an ending and the label.
    label = max(len(prompts.encode_candidate(c)) for c in prompts.candidates("pairwise"))
    extra = label + (lc.rationale_max_tokens + 16 if lc.chain_of_thought else 0)
    worst, worst_i = 0, 0
    for lo in range(0, len(pairs), 1024):  # batched: the tokenizer is much faster on lists
        texts = [prompts.prompt(p["context"], p["response_a"], p["response_b"], kind="pairwise")
                 for p in pairs[lo: lo + 1024]]
        for i, ids in enumerate(prompts.encode_batch(texts), start=lo):
            if len(ids) > worst:
                worst, worst_i = len(ids), i
    # A couple of tokens of slack: the swapped order can tokenize one or two tokens longer.
    need = worst + extra + 2
    if need > positions:
        raise ConfigError(f"label.source: pair {worst_i}'s labeler prompt needs {need} tokens, but the labeler model "
                          f"{cfg.model.labeler} has only {positions} positions; shorten the pairs or use fewer few-shot exemplars")
    if need > context:
        raise ConfigError(f"label.max_pair_tokens: pair {worst_i}'s labeler prompt needs {need} tokens, but the labeler "
                          f"engine gets {context} (512 + 256·few-shot + label.max_pair_tokens); raise "
                          f"label.max_pair_tokens by {need - context}")


def label_run(cfg: LabelConfig, progress: bool = True, verbose: bool = False) -> dict:
    """Label every pair of `cfg.label.source` not yet on disk; returns (and writes) the summary.

    Engine and driver output goes to label.output_dir/logs/; `verbose` streams it instead."""
    from rlaif_ray.preflight import check_model_ref

    start = time.perf_counter()
    out = Path(cfg.label.output_dir)
    logs = RunLogs.under(out, verbose)
    check_model_ref("model.labeler", cfg.model.labeler)
    with logs.quiet_loading():
        pairs = load_pairs(cfg.label)
    check_labeler_context(cfg, pairs)
    prepare_output(out, _manifest(cfg, pairs))
    bounds = shard_bounds(len(pairs), cfg.label.shard_size)
    todo = [k for k, (lo, hi) in enumerate(bounds) if not shard_done(out, k, hi - lo)]
    done_pairs = len(pairs) - sum(bounds[k][1] - bounds[k][0] for k in todo)
    label_s = 0.0
    if todo:
        with ray_session(cfg.ray, logs):
            n_actors, started = min(cfg.labeler.num_actors, len(todo)), time.perf_counter()
            logs.say(f"starting {describe_roles([('labeler', n_actors)])}")
            pool = ActorPool("labeler", LabelerActor, cfg.labeler.resources, n_actors,
                             lambda r: (cfg, r, labeler_context_tokens(cfg.labeler, cfg.label.max_pair_tokens)),
                             actor_env(cfg.ray), cfg.run.startup_timeout_s, logs,
                             CallPolicy.of(cfg.run))
            try:
                wait_all_ready([pool], cfg.run.startup_timeout_s, logs, started)
                # The bar starts once the engines are up, so its rate is the labeling rate.
                with tqdm(total=len(pairs), initial=done_pairs, desc="label", unit="pair", disable=not progress,
                          dynamic_ncols=True, file=logs.terminal) as bar:
                    t0 = time.perf_counter()
                    try:
                        _label_shards(pool, cfg, pairs, bounds, todo, out, bar)
                    except (ActorFailed, ActorCodeError) as err:
                        raise RunStopped(f"{err}; finished shards are kept in {out}: "
                                         f"run the same command to resume") from None
                    label_s = time.perf_counter() - t0
            finally:
                pool.shutdown()
    summary = summarize_labels(out, len(bounds))
    labeled = len(pairs) - done_pairs
    summary.update(labeled_pairs=labeled, skipped_shards=len(bounds) - len(todo), n_shards=len(bounds),
                   seconds=round(time.perf_counter() - start, 2), label_seconds=round(label_s, 2),
                   pairs_per_s=round(labeled / label_s, 2) if label_s else None, output_dir=str(out))
    _write_atomic(out / "summary.json", json.dumps(summary, indent=2).encode())
    return summary




def _label_shards(pool: ActorPool, cfg: LabelConfig, pairs: list[dict], bounds: list[tuple[int, int]],
                  todo: list[int], out: Path, bar: tqdm) -> None:
    """Hand shards to the actors as they free up and write each result as it lands.

    The pool's call policy (driver/calls.py) covers failures: a lost or late labeler is
    replaced and its shard labeled again; an error raised by the labeler's own code stops
    the job (finished shards stay on disk, so the same command resumes).
    """
    queue, idle = deque(todo), deque(range(len(pool.actors)))
    inflight: dict = {}  # Call -> shard index
    while queue or inflight:
        stop_if_interrupted()
        while queue and idle:
            i, k = idle.popleft(), queue.popleft()
            chunk = pairs[slice(*bounds[k])]
            call = pool.submit(i, "pairwise_preferences", [p["context"] for p in chunk],
                               [p["response_a"] for p in chunk], [p["response_b"] for p in chunk], prompts=len(chunk))
            inflight[call] = k
        call = pool.wait_first(list(inflight))
        k = inflight.pop(call)
        lo, hi = bounds[k]
        write_shard(out, k, lo, pairs[lo:hi], call.value)
        bar.update(hi - lo)
        idle.append(call.i)


def summarize_labels(out: Path, n_shards: int) -> dict:
    """`label_stats` over every shard in `out` (mean P(A), position consistency, alignment)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = ["p_a", "p_ab", "p_ba", "human_choice"]
    table = pa.concat_tables([pq.read_table(shard_path(out, k), columns=cols) for k in range(n_shards)])
    d = table.to_pydict()
    return label_stats(d["p_a"], d["p_ab"], d["p_ba"], d["human_choice"])
