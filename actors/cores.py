"""Pinning an actor to a set of CPU cores (`resources.cpu_affinity`).

On a CPU node shared by several roles, each role can get cores of its own, as it would get
GPUs of its own on a cluster: its actors run only there and size their thread pools to them
(torch's intra-op threads, OpenMP, and vLLM's CPU thread binding). Linux only.
"""

from __future__ import annotations

import os
from pathlib import Path


def pin_to_cores(cores: list[int]) -> None:
    """Restrict every thread of this process to `cores` (threads started later inherit it)
    and size the thread pools to them. Call before any engine is built."""
    import torch

    available = os.sched_getaffinity(0)
    missing = sorted(set(cores) - available)
    if missing:
        raise ValueError(f"resources.cpu_affinity: cores {missing} are not available here (this node offers {sorted(available)})")
    for task in Path("/proc/self/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cores)
        except OSError:  # a thread that ended meanwhile
            pass
    n = str(len(cores))
    os.environ["OMP_NUM_THREADS"] = n
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, cores))  # vLLM binds its OpenMP threads here
    torch.set_num_threads(len(cores))


def pinned(cls: type, cores: list[int]) -> type:
    """`cls` whose instances first pin their process to `cores`, then construct (the same
    pattern as driver/logs.py's `with_output_to`: the constructor is the first of our code
    that runs in an actor's process)."""

    class Pinned(cls):
        def __init__(self, *args, **kwargs):
            pin_to_cores(cores)
            super().__init__(*args, **kwargs)

    Pinned.__name__ = Pinned.__qualname__ = cls.__name__
    Pinned.__doc__ = cls.__doc__
    return Pinned
