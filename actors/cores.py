"""Pinning an actor to a set of CPU cores (`resources.cpu_affinity`), or sizing its thread pools
(`resources.threads`, or what `rlaif_ray.cores.role_threads` derives for local mode).

On a CPU node shared by several roles, each role can get cores of its own, as it would get
GPUs of its own on a cluster: its actors run only there and size their thread pools to them
(torch's intra-op threads, OpenMP, and vLLM's CPU thread binding). Linux only. The pool
runs `pin_to_cores` first thing in each actor's process (`driver.logs.set_up_first`).
"""

from __future__ import annotations

import os
from pathlib import Path


def pin_to_cores(cores: list[int]) -> None:
    """Restrict every thread of this process to `cores` (threads started later inherit it)
    and size the thread pools to them. Call before any engine is built."""
    available = os.sched_getaffinity(0)
    missing = sorted(set(cores) - available)
    if missing:
        raise ValueError(f"resources.cpu_affinity: cores {missing} are not available here (this node offers {sorted(available)})")
    for task in Path("/proc/self/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cores)
        except OSError:  # a thread that ended meanwhile
            pass
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, cores))  # vLLM binds its OpenMP threads here
    use_threads(len(cores))


def use_threads(threads: int) -> None:
    """Size this process's compute thread pools (torch's intra-op threads and OpenMP, which
    vLLM's CPU kernels use) to `threads`. Call before any engine is built: an in-process vLLM
    engine keeps the count it was built with."""
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
