"""The samples a run shows a person: RUN_DIR/samples.jsonl read back, picked and laid out.

One JSON row per sample (written by the driver every iteration, `run.log_samples` of them):

    {"iteration", "policy_version", "prompt_index", "sample_index", "prompt", "response",
     "response_tokens", "rewards": {source name: value}, "reward": weighted sum of the sources,
     "kl": Σ_t KL_t over the response in nats}        (a non-finite value is null)

Pure text handling, no Ray and no torch: `rlaif-ray samples` uses it, and the metrics writer
uses `samples_markdown` for TensorBoard's text tab.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

from rlaif_ray.run_dir import RunDirError

SAMPLES_FILE = "samples.jsonl"
PROMPT_LINES = 4     # a long prompt keeps its first line and its last 3 (a question or a chat
                     # template's user turn sits at the end)
RESPONSE_LINES = 8   # a long response keeps its first 8 lines


def read_samples(run_dir: str | Path) -> list[dict]:
    """Every row of RUN_DIR/samples.jsonl; a missing run dir or file is a RunDirError saying so."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"samples: no run dir at {run_dir}")
    path = run_dir / SAMPLES_FILE
    if not path.is_file():
        raise RunDirError(f"samples: {run_dir} has no {SAMPLES_FILE} (it is written from the first iteration on "
                          f"when run.log_samples > 0)")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise RunDirError(f"samples: {path} line {n} is not JSON (a write cut short?)") from None
    if not rows:
        raise RunDirError(f"samples: {path} is empty")
    return rows


def select_iterations(rows: list[dict], iteration: int | None = None, last: int | None = None) -> list[dict]:
    """The rows of one iteration, of the last `last` iterations, or (neither) of the last one."""
    its = sorted({r["iteration"] for r in rows})
    if iteration is not None:
        if iteration not in its:
            raise RunDirError(f"samples: no samples of iteration {iteration}; the run has iterations "
                              f"{_ranges(its)}")
        keep = {iteration}
    else:
        if last is not None and last < 1:
            raise RunDirError(f"samples: --last must be >= 1, got {last}")
        keep = set(its[-(last or 1):])
    return [r for r in rows if r["iteration"] in keep]


def format_samples(rows: list[dict], width: int | None = None, full: bool = False) -> str:
    """A readable plain-text table: per iteration a header and the column names, then per
    sample one line of numbers (combined reward, each source's reward, KL, length) with its
    prompt and response wrapped and indented below it. `width`: of the text (default: the
    terminal's, at most 120); `full`: nothing shortened."""
    width = width or min(shutil.get_terminal_size((100, 24)).columns, 120)
    out = []
    for it in sorted({r["iteration"] for r in rows}):
        group = [r for r in rows if r["iteration"] == it]
        version = group[0].get("policy_version")
        out.append(f"── iteration {it}: {len(group)} sample{'s' * (len(group) != 1)}"
                   + (f" of policy version {version}" if version is not None else "") + " ──")
        head, lines = _number_lines(group)
        out.append(head)
        for r, line in zip(group, lines):
            out.append(line)
            out.extend(_wrapped("prompt", r["prompt"], width, None if full else PROMPT_LINES, keep_end=True))
            out.extend(_wrapped("response", r["response"], width, None if full else RESPONSE_LINES))
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def _number_lines(group: list[dict]) -> tuple[str, list[str]]:
    """Column header and one aligned line of numbers per sample."""
    sources = list(group[0].get("rewards", {}))
    head = ["#", "prompt·sample", "reward", *sources, "KL (nats)", "tokens"]
    table = [[str(n), f"{r['prompt_index']}·{r['sample_index']}", _signed(r.get("reward")),
              *(_signed(r.get("rewards", {}).get(s)) for s in sources), _plain(r.get("kl")), str(r["response_tokens"])]
             for n, r in enumerate(group, 1)]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(head)]

    def line(cells):
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return line(head), [line(cells) for cells in table]


def _wrapped(label: str, text: str, width: int, max_lines: int | None, keep_end: bool = False) -> list[str]:
    """`label` then the text wrapped under a hanging indent, line breaks kept. Over `max_lines`
    it is cut: its start kept, or (keep_end) its first line and its end."""
    indent = " " * 12
    lines = []
    for para in text.splitlines():
        lines.extend(textwrap.wrap(para, width=max(width - len(indent), 20)) or [""])
    if not text.strip():
        lines = ["(empty)"]
    if max_lines is not None and len(lines) > max_lines:
        head, tail = (1, max_lines - 1) if keep_end else (max_lines, 0)
        hidden = len(text) - sum(len(l) for l in lines[:head] + lines[len(lines) - tail:])
        cut = f"… ({hidden} more characters; --full shows all)"
        lines = lines[:head] + [cut] + (lines[len(lines) - tail:] if tail else [])
    return [f"  {label:<9} {lines[0]}".rstrip()] + [(indent + l).rstrip() for l in lines[1:]]


def samples_markdown(rows: list[dict], max_chars: int = 600) -> str:
    """One iteration's samples as a Markdown table (TensorBoard's text tab renders it)."""
    if not rows:
        return ""
    sources = list(rows[0].get("rewards", {}))
    head = ["#", "reward", *sources, "KL (nats)", "tokens", "prompt", "response"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n, r in enumerate(rows, 1):
        cells = [str(n), _signed(r.get("reward")), *(_signed(r.get("rewards", {}).get(s)) for s in sources),
                 _plain(r.get("kl")), str(r["response_tokens"]), _md_cell(r["prompt"], max_chars),
                 _md_cell(r["response"], max_chars)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _md_cell(text: str, max_chars: int) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped, shortened."""
    one = " ⏎ ".join(text.splitlines()) if text.strip() else "(empty)"
    if len(one) > max_chars:
        one = one[:max_chars] + f" … (+{len(one) - max_chars} chars)"
    return one.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def _signed(v) -> str:
    return "n/a" if v is None else f"{v:+.3f}"


def _plain(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _ranges(values: list[int]) -> str:
    """[1, 2, 3, 7] → '1-3, 7'."""
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts)
