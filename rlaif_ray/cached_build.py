"""Build a folder once, for many processes: a file lock, a temp dir, then an atomic rename.

Used by the offline model fixtures (`toy.models.build`, `fixtures.smollm2`): parallel
pytest processes must build a cache folder once, and no reader may ever see it half written.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing); blocks while another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_into_place(out_dir: Path, build: Callable[[Path], None]) -> None:
    """Run `build(tmp)` on a fresh temp dir beside `out_dir`, then rename it to `out_dir`
    (replacing a stale one). The caller holds `file_lock`; a failed build leaves no temp dir."""
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp-", dir=out_dir.parent))
    try:
        build(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it 0700; the cache is shared
        if out_dir.exists():
            # Move the stale folder aside first: rename onto a non-empty dir fails.
            stale = Path(tempfile.mkdtemp(prefix=out_dir.name + ".old-", dir=out_dir.parent))
            out_dir.rename(stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
