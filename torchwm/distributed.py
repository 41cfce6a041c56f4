"""Several processes training one model (``torchrun``): process group, ranks, and batch statistics across ranks.

``torchrun --nproc_per_node=N -m torchwm train --config ...`` starts N processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and a rendezvous in their environment; :func:`setup` joins them into one process group (NCCL on
CUDA, gloo on CPU) and picks each process's device (``cuda:LOCAL_RANK``). The trainer then wraps the model in
``DistributedDataParallel``, gives every rank its share of each global batch, and lets rank 0 alone write the run
directory. A single process (no ``WORLD_SIZE``, or 1) is unchanged: every function here is then a no-op.

Batch statistics: inside :func:`batch_statistics_across_ranks` (the trainer's training step),
:func:`gather_batch` concatenates a tensor's rows from every rank (an all-gather whose backward sums each rank's
gradient into its own rows). The VICReg variance / covariance terms and SIGReg call it,
so with DDP's gradient averaging they, their values and their gradients equal those of one process on the global
batch. BatchNorm layers stay per rank (``SyncBatchNorm`` needs CUDA; :func:`sync_batchnorm` converts them there).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import os
from typing import Any, Iterator

import torch
import torch.distributed as dist

_ACROSS_RANKS: contextvars.ContextVar[bool] = contextvars.ContextVar("torchwm_across_ranks", default=False)


def requested() -> bool:
    """Whether this process was started as one of several (``WORLD_SIZE`` > 1, as torchrun sets it)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """Whether a process group of more than one process is set up."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that writes checkpoints, metrics, TensorBoard and figures."""
    return rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group when started by it (no-op otherwise); returns this rank's device.

    CUDA: NCCL, device ``cuda:LOCAL_RANK`` (nothing assumes ``cuda:0``); otherwise gloo on the CPU.
    """
    if not requested() or active():
        return _local_device(device)
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed; run one process")
    device = _local_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return device


def _local_device(device: torch.device) -> torch.device:
    if device.type == "cuda" and device.index is None and requested():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def barrier() -> None:
    if active():
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. collecting data, writing a file), the other ranks after it."""
    if not active():
        yield
        return
    if not is_main():
        dist.barrier()
    try:
        yield
    finally:
        if is_main():
            dist.barrier()


@contextlib.contextmanager
def batch_statistics_across_ranks() -> Iterator[None]:
    """Within the block, :func:`gather_batch` gathers across ranks (the trainer's training step)."""
    token = _ACROSS_RANKS.set(True)
    try:
        yield
    finally:
        _ACROSS_RANKS.reset(token)


def gathering() -> bool:
    return _ACROSS_RANKS.get() and active()


def gather_batch(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """``x``'s rows (along ``dim``) from every rank, in rank order, with gradients; ``x`` itself when not gathering.

    Every rank must call it with the same shape except along ``dim`` being equal too (equal shards)."""
    if not gathering():
        return x
    return _GatherRows.apply(x.contiguous(), dim)


class _GatherRows(torch.autograd.Function):
    """All-gather along ``dim`` whose backward sums the gradient over ranks and keeps this rank's rows.

    Written with the public collectives (gloo and NCCL both have them): torch's autograd all-gather
    (``torch.distributed.nn.functional.all_gather``) is deprecated (a FutureWarning in torch 2.14) in favour of private functional collectives.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dim: int) -> torch.Tensor:
        ctx.dim, ctx.rows = dim, x.shape[dim]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        return torch.cat(parts, dim=dim)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every rank's loss depends on these rows
        return grad.narrow(ctx.dim, dist.get_rank() * ctx.rows, ctx.rows), None


def same_on_all_ranks(x: torch.Tensor) -> torch.Tensor:
    """Rank 0's ``x`` on every rank (random draws a gathered statistic must share, e.g. SIGReg's directions)."""
    if gathering():
        dist.broadcast(x, src=0)
    return x


def mean_over_ranks(values: dict[str, float], sums: tuple[str, ...] = ()) -> dict[str, float]:
    """Each value averaged over the ranks (those named in ``sums`` added up, e.g. throughputs); keys must agree."""
    if not active() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    t = t.cpu()
    n = world_size()
    return {k: float(v) if k in sums else float(v) / n for k, v in zip(keys, t.tolist())}


def any_rank(flag: bool) -> bool:
    """True when ``flag`` is true on some rank (so every rank takes the same branch)."""
    if not active():
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return bool(t.item() > 0)


def all_ranks(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (picklable values, e.g. random-generator states)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def sync_batchnorm(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """BatchNorm → ``SyncBatchNorm`` on CUDA with several ranks (statistics over the global batch); unchanged
    otherwise (gloo / CPU: BatchNorm statistics stay per rank)."""
    if active() and device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def cleanup() -> None:
    """Leave the process group (end of a torchrun job), once every rank has got here: a rank that tore its
    group down while another was still in a collective aborted it at exit (gloo, rarely)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
