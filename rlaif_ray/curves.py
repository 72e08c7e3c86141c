"""Training curves of run dirs (their metrics.jsonl) as PNGs, one per metric, one line per run."""

from __future__ import annotations

from pathlib import Path

from rlaif_ray.run_dir import read_metrics


def curve_file_name(metric: str) -> str:
    """`reward/mean` → `curve-reward_mean.png`."""
    return "curve-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in metric) + ".png"


def plot_curves(run_dirs: list[str | Path], metrics: list[str], out_dir: str | Path) -> list[dict]:
    """Plot each metric against `iteration` for every run that logged it.

    Returns one entry per metric: {"metric", "file" (relative to out_dir), "runs"} or, when
    no run logged it, {"metric", "note"}. Non-finite values (written as null) are skipped.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out_dir = Path(out_dir)
    runs = [(Path(d), read_metrics(Path(d))) for d in run_dirs]
    out = []
    for metric in metrics:
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        plotted = []
        for path, rows in runs:
            pts = [(r["iteration"], r[metric]) for r in rows if isinstance(r.get(metric), (int, float))]
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", markersize=3, label=path.name or str(path))
            plotted.append(str(path))
        if not plotted:
            plt.close(fig)
            out.append({"metric": metric, "note": "not logged by any of the runs"})
            continue
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("iteration")
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        name = curve_file_name(metric)
        fig.savefig(out_dir / name)
        plt.close(fig)
        out.append({"metric": metric, "file": name, "runs": plotted})
    return out
