"""A run directory: its config, metrics and samples (JSONL + TensorBoard) and the guard against mixing runs."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from rlaif_ray.config import VerbConfig, dump_config
from rlaif_ray.errors import RunDirError


def prepare_run_dir(run_dir: Path, cfg: VerbConfig, resume: bool, overwrite: bool) -> None:
    """Create the run dir, or refuse one that already holds a different run.

    Nothing is deleted unless `overwrite` is given; `resume` needs an existing run.
    """
    config_file = run_dir / "config.yaml"
    if resume:
        if not config_file.exists():
            raise RunDirError(f"--resume {run_dir}: no run there (config.yaml missing)")
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunDirError(f"run dir {run_dir} already holds a run; pass --resume to continue it "
                              f"or --overwrite to replace it (nothing was changed)")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file.write_text(dump_config(cfg))


class MetricsWriter:
    """Appends one JSON object per iteration to metrics.jsonl and mirrors scalars to TensorBoard.

    `first_step`: the first iteration this process writes (a resumed run: the first one it
    redoes). Event files can't be edited, so the steps an earlier process wrote past its
    checkpoint stay on disk. Each process's event file opens with a session-start marker at
    its first step (SummaryWriter's `purge_step`); TensorBoard takes every marker after the
    first as a restart and hides the earlier events at or after its step, so each iteration
    shows once. (metrics.jsonl is rewritten by `rewrite_metrics` instead.)
    """

    def __init__(self, run_dir: Path, name: str, first_step: int = 1):
        self.path = run_dir / "metrics.jsonl"
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"), comment=name, purge_step=first_step)

    def write(self, row: dict) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(clean) + "\n")
        step = int(row["iteration"])
        for k, v in row.items():
            if isinstance(v, (int, float)) and k != "iteration":
                self.tb.add_scalar(k, v, step)
        self.tb.flush()

    def write_samples(self, iteration: int, samples: list[dict]) -> None:
        """An iteration's samples as a Markdown table in TensorBoard's text tab (tag `samples`)."""
        if not samples:
            return
        from rlaif_ray.samples import samples_markdown

        self.tb.add_text("samples", samples_markdown(samples), int(iteration))
        self.tb.flush()

    def close(self) -> None:
        self.tb.close()


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rewrite_metrics(run_dir: Path, keep: list[dict], discarded: list[dict]) -> None:
    """Keep `keep` in metrics.jsonl; rows of iterations that will be redone are moved (not
    deleted) to metrics.discarded.jsonl."""
    run_dir = Path(run_dir)
    if discarded:
        with (run_dir / "metrics.discarded.jsonl").open("a") as f:
            for row in discarded:
                f.write(json.dumps(row) + "\n")
    tmp = run_dir / "metrics.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
    tmp.replace(run_dir / "metrics.jsonl")


def rewrite_jsonl(path: Path, keep) -> None:
    """Keep only the rows of a JSONL file for which `keep(row)` is true (atomic replace)."""
    path = Path(path)
    if not path.exists():
        return
    rows = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows if keep(r)))
    tmp.replace(path)
