"""Joining a learner group's torch.distributed process group (all ranks at once).

Why not DeepSpeed's env:// rendezvous alone: rank 0's TCPStore would listen on every
interface whatever MASTER_ADDR says. Here rank 0 binds the store's socket to MASTER_ADDR (the
node address Ray gave it: 127.0.0.1 in local mode), hands it to the store, and DeepSpeed then
finds the group already formed.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import ray

# How long ranks wait for each other at the rendezvous.
RENDEZVOUS_TIMEOUT = timedelta(minutes=10)


def rendezvous_address() -> tuple[str, int]:
    """This node's address and a port free on it (called on rank 0)."""
    addr = ray.util.get_node_ip_address()
    with socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET) as s:
        s.bind((addr, 0))
        return addr, s.getsockname()[1]


def joined() -> bool:
    """Whether this process is in a process group already."""
    import torch.distributed as dist

    return dist.is_initialized()


def join(master_addr: str, master_port: int, rank: int, world: int, backend: str) -> None:
    import deepspeed
    import torch.distributed as dist

    # Read by DeepSpeed and by libraries that look for the group's address.
    os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(master_port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK="0")
    listen_fd = None
    if rank == 0:
        listener = socket.socket(socket.AF_INET6 if ":" in master_addr else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((master_addr, master_port))
        listener.listen()
        listen_fd = listener.detach()  # the store owns the descriptor now; Python must not close it
    store = dist.TCPStore(master_addr, master_port, world, rank == 0, timeout=RENDEZVOUS_TIMEOUT,
                          master_listen_fd=listen_fd, use_libuv=False)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=RENDEZVOUS_TIMEOUT)
    deepspeed.init_distributed(dist_backend=backend)


def all_gather_objects(obj, world: int) -> list:
    """Every rank's `obj`, in rank order, on every rank (a pickled all-gather; one rank: [obj])."""
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, rank: int, world: int):
    """Rank 0's `obj` on every rank (the other ranks pass None)."""
    if world == 1:
        return obj
    import torch.distributed as dist

    box = [obj if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
