"""What a person sees: the real CLI, as a subprocess, on the tiny models.

By default the terminal holds only the run's own lines (roles starting and ready, the
progress bar, the done line); what the engines, Ray and the libraries print goes to one
file per actor plus driver.log under the run's logs/ folder. `--verbose` streams it all
(tested with the normal run of tests/driver/test_local_ray_cleanup.py: one run for both).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from toy.pairs import write_toy_pairs_jsonl

REPO = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "rlaif-ray"  # the console script, as a person runs it

# What engine output looks like, and must not reach a quiet terminal.
VLLM_CONFIG_DUMP = "Initializing a V1 LLM engine"
NOISE = re.compile(r"\bINFO\b|\bWARNING\b(?! rlaif_ray)|Triton|libtcmalloc|Token authentication|"
                   r"Initializing a V1|DeepSpeed|Loading weights|\(pid=|Actor pid=")


def run_cli(args: list[str], timeout_s: float = 900) -> str:
    """stdout and stderr of `rlaif-ray ARGS`, interleaved as on a terminal; fails on exit != 0."""
    env = {**os.environ, "COLUMNS": "120"}
    proc = subprocess.run([str(CLI), *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=timeout_s, env=env)
    # Decoded by hand: text=True would turn the progress bar's carriage returns into newlines.
    out = proc.stdout.decode("utf-8", errors="replace")
    assert proc.returncode == 0, out[-4000:]
    return out


def screen_lines(output: str) -> list[str]:
    """The lines a person reads: a progress bar redraws itself with carriage returns, so
    only the last state of each physical line counts."""
    lines = []
    for line in output.split("\n"):
        shown = [seg for seg in line.split("\r") if seg.strip()]
        if shown:
            lines.append(shown[-1])
    return lines


def tiny_args(tiny_models, toy_prompts_file) -> list[str]:
    return ["--config", str(REPO / "configs/local.yaml"), "--set", f"model.policy={tiny_models['policy']}",
            "--set", f"model.labeler={tiny_models['labeler']}", "--set", f"data.source={toy_prompts_file}"]


@pytest.mark.slow
def test_train_is_quiet_and_logs_every_actor(tiny_models, toy_prompts_file, tmp_path):
    run_dir = tmp_path / "run"
    out = run_cli(["train", *tiny_args(tiny_models, toy_prompts_file), "--run-dir", str(run_dir),
                   "--set", "run.iterations=2"])
    lines = screen_lines(out)
    print("\n".join(lines))
    assert len(lines) <= 15, lines
    assert not [l for l in lines if NOISE.search(l)], lines
    starting = [l for l in lines if l.startswith("starting ")]
    assert starting == ["starting rollout ×1, labeler ×1, reference ×1, learner ×1"], lines
    ready = [l for l in lines if l.startswith("ready: ")]
    assert len(ready) == 1 and re.fullmatch(
        r"ready: rollout \([\d.]+ s\), labeler \([\d.]+ s\), reference \([\d.]+ s\), learner \([\d.]+ s\)",
        ready[0]), lines
    assert lines[-1].startswith(f"done: 2 iterations in {run_dir}"), lines
    assert any("2/2" in l and "reward=" in l and "kl=" in l for l in lines), lines  # the bar's final state

    logs = run_dir / "logs"
    files = {p.name for p in logs.iterdir()}
    assert {"rollout-0.log", "labeler-0.log", "reference-0.log", "learner-0.log",
            "driver.log"} <= files, files
    for name in ("rollout-0.log", "labeler-0.log"):
        text = (logs / name).read_text()
        assert VLLM_CONFIG_DUMP in text and "INFO" in text, (name, text[:2000])
    assert "Loading weights" in (logs / "reference-0.log").read_text()
    assert "DeepSpeed" in (logs / "learner-0.log").read_text()
    assert "Started a local Ray instance" in (logs / "driver.log").read_text()
    assert not (logs / "ray").exists()  # Ray's own logs are kept only when a run failed


@pytest.mark.slow
def test_label_is_quiet(tiny_models, tmp_path):
    pairs = write_toy_pairs_jsonl(tmp_path / "pairs.jsonl", 32, seed=0, split="heldout")
    out_dir = tmp_path / "labels"
    out = run_cli(["label", "--config", str(REPO / "configs/label-toy.yaml"),
                   "--set", f"model.labeler={tiny_models['labeler']}", "--set", f"label.source={pairs}",
                   "--set", f"label.output_dir={out_dir}", "--set", "label.shard_size=16"])
    lines = screen_lines(out)
    print("\n".join(lines))
    assert len(lines) <= 6, lines
    assert not [l for l in lines if NOISE.search(l)], lines
    assert lines[0] == "starting labeler ×1", lines
    assert re.fullmatch(r"ready: labeler \([\d.]+ s\)", lines[1]), lines
    assert lines[-1].startswith("done: 32 pairs in 2 shards"), lines
    text = (out_dir / "logs" / "labeler-0.log").read_text()
    assert VLLM_CONFIG_DUMP in text, text[:2000]
    assert (out_dir / "logs" / "driver.log").exists()


def test_replacement_actor_appends_to_its_predecessors_file(ray_local, tmp_path):
    """Python prints and raw fd writes (what C++ engines do) both land in the actor's file;
    a replacement actor appends, so the file tells the whole story of that slot."""
    import time

    from rlaif_ray.config import Resources
    from rlaif_ray.driver.logs import RunLogs
    from rlaif_ray.driver.pools import ActorPool, wait_all_ready

    class Echo:  # defined here so Ray ships it by value to the workers
        def __init__(self, rank: int):
            print(f"python print from echo-{rank}", flush=True)
            os.write(2, f"raw fd 2 write from echo-{rank}\n".encode())

        def ping(self) -> str:
            return "ok"

    logs = RunLogs(tmp_path / "logs")
    pool = ActorPool("echo", Echo, Resources(num_cpus=0.1), 1, lambda r: (r,), {}, 120, logs)
    try:
        wait_all_ready([pool], 120, logs, time.perf_counter())
        pool.replace(0)
    finally:
        pool.shutdown()
    text = (tmp_path / "logs" / "echo-0.log").read_text()
    assert text.count("python print from echo-0") == 2, text
    assert text.count("raw fd 2 write from echo-0") == 2, text
