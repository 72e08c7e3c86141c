"""Training curves of run dirs (their metrics.jsonl) as PNGs, one per metric, one line per run.

Each figure says in words what it plots (which reward, KL in nats per sequence, length in
tokens, against the PPO iteration), and `describe_metric` gives the sentence report.md puts
under it. The words come from the run's own config.yaml: the reward sources and their
weights, the KL estimator, the length limit.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from rlaif_ray.run_dir import read_metrics

X_LABEL = "PPO iteration"


def curve_file_name(metric: str) -> str:
    """`reward/mean` → `curve-reward_mean.png`."""
    return "curve-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in metric) + ".png"


def run_facts(run_dir: str | Path) -> dict:
    """What a run's config.yaml says about its curves: reward sources [(name, what it is in
    words, weight)], KL estimator, response length limit. Missing or unreadable parts are left out."""
    path = Path(run_dir) / "config.yaml"
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    facts = {}
    sources = (raw.get("reward") or {}).get("sources")
    if sources:
        facts["sources"] = [(_source_name(s), _source_words(s), float(s.get("weight", 1.0))) for s in sources]
    facts["kl_estimator"] = (raw.get("kl") or {}).get("estimator", "k1")
    limit = ((raw.get("rollout") or {}).get("sampling") or {}).get("max_new_tokens")
    if limit:
        facts["max_new_tokens"] = int(limit)
    return facts


def _source_name(s: dict) -> str:
    """A source's name as metrics.jsonl keys it (RewardSource.label)."""
    if s.get("name"):
        return s["name"]
    return s["function"].split(":")[1] if s.get("kind") == "function" and s.get("function") else s.get("kind", "?")


def _source_words(s: dict) -> str:
    kind = s.get("kind", "labeler_direct")
    if kind == "labeler_direct":
        return "the AI labeler's direct score, −1…1"
    if kind == "function":
        return f"the function {s.get('function')}"
    what = "reward model" if kind == "reward_model" else "classifier"
    return f"the {what} {Path(str(s.get('model'))).name}"


def reward_definition(facts: dict) -> str:
    """'labeler_direct (the AI labeler's direct score, −1…1)', or a weighted sum of sources."""
    if facts.get("mixed"):
        return "each run's own (see report.md)"
    used = [(n, words, w) for n, words, w in facts.get("sources", []) if w]
    if not used:
        return "the combined reward (sources not in the run's config)"
    if len(used) == 1 and used[0][2] == 1.0:
        return f"{used[0][0]} ({used[0][1]})"
    return " + ".join(f"{w:g} × {n}" for n, _, w in used)


def describe_metric(metric: str, facts: dict) -> dict:
    """{"title", "ylabel", "meaning"} of a metrics.jsonl key, in words with units."""
    est = facts.get("kl_estimator", "k1")
    sources = {n: (words, w) for n, words, w in facts.get("sources", [])}
    parts = metric.split("/")
    if metric == "reward/mean":
        what = reward_definition(facts)
        return {"title": f"Reward: {what}", "ylabel": "reward, mean over the iteration's samples",
                "meaning": f"Mean reward of the samples generated in each iteration; the reward is {what}, before "
                           "the KL penalty. It rising means the policy writes answers the reward prefers."}
    if len(parts) == 3 and parts[0] == "reward" and parts[2] in ("mean", "std"):
        words, weight = sources.get(parts[1], (None, None))
        words = f" ({words})" if words else ""
        role = "" if weight is None else (" It is logged only (weight 0): the policy is not trained on it, so it "
                                          "shows whether the trained reward tracks it." if weight == 0
                                          else f" It enters the trained reward with weight {weight:g}.")
        stat = "mean" if parts[2] == "mean" else "standard deviation"
        return {"title": f"Reward source {parts[1]}{words}", "ylabel": f"reward, {stat} over samples",
                "meaning": f"{stat.capitalize()} of source `{parts[1]}`{words} over each iteration's samples.{role}"}
    if metric == "kl/mean":
        return {"title": "KL(policy ‖ reference), nats per sequence", "ylabel": "KL, nats per sequence",
                "meaning": f"How far the policy has moved from the frozen reference: the sum over a response's tokens "
                           f"of the per-token KL estimate ({est}), averaged over samples, in nats. 0 at the start; "
                           "the KL penalty keeps it from growing without bound."}
    if metric == "kl/token_mean":
        return {"title": "KL(policy ‖ reference), nats per token", "ylabel": "KL, nats per token",
                "meaning": f"The per-token KL estimate ({est}) averaged over all response tokens, in nats."}
    if metric == "response_length/mean":
        limit = facts.get("max_new_tokens")
        cap = f" (the limit, rollout.sampling.max_new_tokens, is {limit})" if limit else ""
        return {"title": "Response length, tokens", "ylabel": "tokens per response, mean",
                "meaning": f"Mean length of the generated responses in tokens{cap}. A curve that runs to the limit "
                           "means answers are being cut off; one that falls to 0 means the policy learned to stop early."}
    return _describe_other(metric)


_OTHER = {
    "reward/std": ("Reward spread", "reward, standard deviation over samples",
                   "Standard deviation of the combined reward over each iteration's samples."),
    "kl/coef": ("KL coefficient β", "β (unitless)", "The KL penalty's weight; it moves only with the adaptive controller."),
    "entropy": ("Policy entropy, nats per token", "entropy, nats per token",
                "Mean entropy of the policy's next-token distribution on its responses; falling entropy means more "
                "deterministic answers."),
    "loss/policy": ("PPO policy loss", "clipped surrogate loss", "The clipped PPO objective (negated), mean over minibatches."),
    "loss/value": ("Value loss", "squared error", "The critic's loss against the returns, mean over minibatches."),
    "clipfrac": ("Share of clipped tokens", "fraction of tokens", "Share of tokens whose probability ratio hit the PPO clip."),
    "sync/max_logprob_diff": ("Weight-sync probe, nats", "max |Δ log-prob|, nats",
                              "Largest difference between the rollout engine's and the learner's log-probabilities of a "
                              "fixed sequence after the weight sync; near 0 when the sync is exact."),
    "throughput/tokens_per_s": ("Throughput, generated tokens per second", "tokens / s",
                                "Response tokens generated per second of the whole iteration."),
}


def _describe_other(metric: str) -> dict:
    if metric in _OTHER:
        title, ylabel, meaning = _OTHER[metric]
        return {"title": title, "ylabel": ylabel, "meaning": meaning}
    if metric.startswith("timing/"):
        stage = metric.split("/", 1)[1].replace("/", " ")
        return {"title": f"Seconds per iteration: {stage}", "ylabel": "seconds",
                "meaning": f"Wall-clock seconds of the `{stage}` stage in each iteration."}
    return {"title": metric, "ylabel": metric, "meaning": f"`{metric}` as logged in metrics.jsonl."}


def run_labels(run_dirs: list[Path]) -> list[str]:
    """Legend names: each run dir's folder name, with its parent's when two names collide."""
    names = [p.name or str(p) for p in run_dirs]
    return [f"{p.parent.name}/{p.name}" if names.count(n) > 1 else n for p, n in zip(run_dirs, names)]


def describe_runs(run_dirs: list[str | Path]) -> list[dict]:
    """Per run dir: its legend label, its path (resolved) and what its reward was."""
    paths = [Path(d) for d in run_dirs]
    return [{"label": label, "dir": str(p.resolve()),
             "reward": reward_definition(run_facts(p)) if run_facts(p).get("sources") else None}
            for p, label in zip(paths, run_labels(paths))]


def plot_curves(run_dirs: list[str | Path], metrics: list[str], out_dir: str | Path) -> list[dict]:
    """Plot each metric against the iteration for every run that logged it.

    Returns one entry per metric: {"metric", "file" (relative to out_dir), "runs", "title",
    "ylabel", "meaning"} or, when no run logged it, {"metric", "note", ...}. Non-finite values
    (written as null) are skipped. The words come from the first run's config.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out_dir = Path(out_dir)
    paths = [Path(d) for d in run_dirs]
    runs = list(zip(paths, run_labels(paths), (read_metrics(p) for p in paths)))
    facts = run_facts(paths[0]) if paths else {}
    if len({reward_definition(run_facts(p)) for p in paths}) > 1:
        facts["mixed"] = True  # runs trained on different rewards: the title can't name one
    out = []
    for metric in metrics:
        words = describe_metric(metric, facts)
        fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
        plotted = []
        for path, label, rows in runs:
            pts = [(r["iteration"], r[metric]) for r in rows if isinstance(r.get(metric), (int, float))]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o", markersize=3, label=label)
                plotted.append(str(path))
        if not plotted:
            plt.close(fig)
            out.append({"metric": metric, "note": "not logged by any of the runs", **words})
            continue
        if metric == "response_length/mean" and facts.get("max_new_tokens"):
            ax.axhline(facts["max_new_tokens"], color="gray", linestyle="--", linewidth=1,
                       label=f"limit: {facts['max_new_tokens']} tokens")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(X_LABEL)
        ax.set_ylabel(words["ylabel"])
        ax.set_title(words["title"], fontsize=11)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="run", title_fontsize=8)
        fig.tight_layout()
        name = curve_file_name(metric)
        fig.savefig(out_dir / name)
        plt.close(fig)
        out.append({"metric": metric, "file": name, "runs": plotted, **words})
    return out
