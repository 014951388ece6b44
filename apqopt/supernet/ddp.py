"""Training on several processes: ``torchrun --nproc-per-node N -m apqopt supernet train ...``.

Why this shape: torchrun starts N copies of the same command and tells each its rank through the
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``). Every process
draws the same global batch of N x ``--batch-size`` images and the same sandwich of subnets from the
shared seed, and trains on its own slice of that batch; ``DistributedDataParallel`` averages the
gradients, so a step is the step one process takes on the whole global batch (batch-norm statistics
aside: each process normalises over its own slice). NCCL carries the gradients between GPUs, gloo
between CPUs. Rank 0 alone writes checkpoints and the weights file; every rank resumes from them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from apqopt.errors import ConfigError


@dataclass(frozen=True)
class Group:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def lead(self) -> bool:
        """Whether this process writes files and shows progress."""
        return self.rank == 0


def join(device: torch.device) -> Group:
    """The process group torchrun set up in the environment, joined (or a group of one without it).
    On CUDA each process takes the GPU of its ``LOCAL_RANK``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Group(device=device)
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this PyTorch has no torch.distributed")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Group(device, dist.get_rank(), dist.get_world_size())


def leave(group: Group) -> None:
    if group.world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(net: nn.Module, group: Group) -> nn.Module:
    """``net`` itself, or wrapped so that backward passes average gradients across the group. Unused
    parameters are expected: a subnet leaves blocks beyond its depth and kernel transforms idle."""
    if group.world == 1:
        return net
    ids = [group.device.index] if group.device.type == "cuda" else None
    return DistributedDataParallel(net, device_ids=ids, find_unused_parameters=True)


def mean(value: float, group: Group) -> float:
    """The mean of a number over the group."""
    if group.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=group.device)
    dist.all_reduce(t)
    return float(t.item()) / group.world


def share(obj: Any, group: Group) -> Any:
    """Rank 0's ``obj``, on every rank."""
    if group.world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(group: Group) -> None:
    if group.world > 1:
        dist.barrier()


__all__ = ["Group", "barrier", "join", "leave", "mean", "share", "wrap"]
