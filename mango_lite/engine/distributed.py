"""One run on several processes (GPUs or nodes) with PyTorch DistributedDataParallel, started by torchrun.

    torchrun --nproc_per_node 4 -m mango_lite train --task segmentation --model mango --out runs/ddp
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 -m mango_lite train ...

:func:`init_from_env` joins the process group that torchrun describes in the environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): on CUDA a group with two backends, ``cpu:gloo,cuda:nccl``
(each process on GPU ``LOCAL_RANK``; DDP's gradient buckets are CUDA tensors and go through NCCL, the
engine's small per-step reductions of Python numbers are CPU tensors and go through gloo — NCCL alone
rejects CPU tensors), gloo alone on CPU. The engine then

* splits every global batch of ``batch_size`` samples into ``world_size`` equal slices (the epoch order
  comes from the same seeded permutation on every rank, so the union of the slices is the batch a single
  process would draw): the optimisation is that of one process with the same batch size, up to
  floating-point order and per-slice loss normalisation;
* initialises data-dependent layers (ActNorm) on the first global batch on every rank before wrapping the
  model, so all ranks start from identical parameters;
* averages gradients with DDP, stops all ranks together on a non-finite loss, averages the logged losses;
* evaluates on every rank (the same parameters, so the same numbers) and writes checkpoints, history and
  metrics from rank 0 only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

# NCCL only reduces CUDA tensors; the flags and logged losses reduced every step are CPU tensors, so a
# CUDA group needs gloo beside NCCL for them (one group, the backend chosen by the tensor's device).
CUDA_BACKEND = "cpu:gloo,cuda:nccl"


@dataclass(frozen=True)
class DistState:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env() -> DistState:
    """Join the process group torchrun set up (no-op without ``WORLD_SIZE`` > 1, or when already joined)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return state()
    if not dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
            dist.init_process_group(CUDA_BACKEND)
        else:
            dist.init_process_group("gloo")
    return state()


def state() -> DistState:
    """Rank and world size of the current process group (one process: rank 0 of 1)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistState()
    return DistState(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def reduction_device() -> torch.device:
    """Where the engine's small reductions live: the CPU, unless the group can reduce CUDA tensors only
    (a group the caller joined with NCCL alone before training; :func:`init_from_env` adds gloo)."""
    if str(dist.get_backend()) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_true(flag: bool) -> bool:
    """``flag`` and-reduced over every rank (True on one process)."""
    if not state().active:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=reduction_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Each value averaged over the ranks (same keys on every rank)."""
    if not state().active or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=reduction_device())
    dist.all_reduce(t)
    t /= state().world_size
    return dict(zip(keys, t.tolist()))


def barrier() -> None:
    if state().active:
        dist.barrier()
