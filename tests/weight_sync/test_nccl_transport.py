"""The weight group's transport on CPU: three processes (a sender, two receivers) form the
group through vLLM's StatelessProcessGroup and move a bucket plan over gloo, the CPU stand-in
for NCCL (same rendezvous, same plan, same send/receive code; only the wire differs)."""

from __future__ import annotations

import multiprocessing as mp
import socket

import pytest
import torch

from rlaif_ray.weight_sync.format import WeightMetadata, build_plan, pack_bucket


def _named():
    g = torch.Generator().manual_seed(0)
    return [("w1", torch.randn(5, 7, generator=g)), ("b1", torch.randn(7, generator=g).to(torch.bfloat16)),
            ("w2", torch.randn(300, generator=g)), ("flag", torch.tensor([True, False, True]))]


def _member(rank: int, port: int, out):
    from rlaif_ray.weight_sync.nccl import WeightGroup, receive_tensors

    named = _named()
    plan = build_plan(WeightMetadata.of(named), bucket_bytes=256)
    group = WeightGroup("127.0.0.1", port, rank, 3, timeout_s=60, device=torch.device("cpu"))
    if rank == 0:
        for bucket in plan.buckets:           # what NcclSender.broadcast does on learner rank 0
            group.broadcast(pack_bucket(bucket, dict(named)))
        out.put((rank, plan.nbytes))
    else:
        got = {n: t.clone() for n, t in receive_tensors(group, plan)}
        out.put((rank, all(torch.equal(got[n], t) for n, t in named) and list(got) == plan.names))
    group.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # ~45 s on 2 cores: three processes each import vLLM
def test_three_process_group_moves_every_bucket_exactly():
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_member, args=(r, port, out)) for r in range(3)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    plan = build_plan(WeightMetadata.of(_named()), 256)
    assert len(plan.buckets) == 4          # fp32 [w1 140 B] [w2 1200 B], bf16 [b1], bool [flag]
    assert results == {0: plan.nbytes, 1: True, 2: True}
