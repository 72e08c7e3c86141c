"""Finding and stopping the processes of one Ray head these tests started (never another Ray
on the machine): they are the processes whose command line or environment holds its temp dir."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

# How long stopped processes get to go before the next, harder signal.
GRACE_S = 15.0
POLL_S = 0.5


def processes_of(marker: str) -> list[int]:
    """PIDs (not ours) whose command line or environment mentions `marker` (a head's temp dir)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if marker.encode() in blob:
            pids.append(int(entry.name))
    return pids


def stop_head(temp_dir: str) -> None:
    """SIGTERM, then SIGKILL, every process of the head with this temp dir."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_of(temp_dir):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + GRACE_S
        while processes_of(temp_dir) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        if not processes_of(temp_dir):
            return
