"""Measuring a subnet: batch-norm re-estimation on a fixed training slice, then accuracy.

Why re-estimate: a subnet's BN statistics differ from the supernet's running averages (which mix
all subnets), so once-for-all recomputes them on a fixed slice of training data before every
evaluation. The slice is always the same images, so measurements are reproducible.
"""

from __future__ import annotations

import torch
from torch import nn

from apqopt import devices
from apqopt.supernet.data import Split, load_split

BN_IMAGES = 2000
EVAL_BATCH = 1000


@torch.no_grad()
def reestimate_bn(net: nn.Module, images: torch.Tensor, batch: int = 500) -> None:
    """Replace every BN's running stats by exact averages over ``images`` (forward in train mode)."""
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [(bn.momentum, bn.training) for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average = exact mean over the batches
    net.train()
    device = devices.of(net)
    for i in range(0, len(images), batch):
        net(devices.to(images[i : i + batch], device))
    for bn, (mom, _) in zip(bns, saved):
        bn.momentum = mom
    net.eval()


def bn_slice(n: int = BN_IMAGES, data: str = "fmnist", space: str = "fmnist") -> torch.Tensor:
    """The fixed training slice BN statistics are re-estimated on (its first n images)."""
    return load_split("train", data, space).images[:n]


@torch.no_grad()
def accuracy(net: nn.Module, split: Split, batch: int = EVAL_BATCH) -> float:
    net.eval()
    correct, device = 0, devices.of(net)
    for i in range(0, len(split), batch):
        predicted = net(devices.to(split.images[i : i + batch], device)).argmax(1).cpu()
        correct += int((predicted == split.labels[i : i + batch]).sum())
    return correct / len(split)


def evaluate_subnet(
    net: nn.Module, split: Split, bn_images: int = BN_IMAGES, data: str = "fmnist", space: str = "fmnist"
) -> float:
    """BN re-estimation on the fixed training slice of ``data``, then accuracy on ``split``."""
    reestimate_bn(net, bn_slice(bn_images, data, space))
    return accuracy(net, split)
