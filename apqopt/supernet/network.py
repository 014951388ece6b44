"""Elastic MobileNetV2 supernet (once-for-all) and the standalone subnets it extracts.

Why: APQ's fp predictor data is cheap only because subnet accuracies come from one trained
supernet (evaluation only). The supernet holds, per block, the widest expand conv, a 7x7 depthwise
weight and the widest project conv; a candidate picks

* kernel: the centre of the 7x7 weight, passed through learned kernel-transform matrices
  (7->5: 25x25, 5->3: 9x9, initialised to identity, as once-for-all does);
* middle channels: the first ``m`` channels, which :meth:`Supernet.sort_channels` keeps ordered by
  importance (L1 norm of the project weights);
* depth: the first ``d`` blocks of each stage.

:meth:`Supernet.extract` copies the chosen weights into a plain :class:`Subnet` of ``nn.Conv2d``
layers, which is what gets evaluated, quantized and fine-tuned.
"""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

from apqopt import devices
from apqopt.space import Block, Candidate, SearchSpace, get_space

BN_MOMENTUM = 0.1


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d, n: int) -> torch.Tensor:
    """Batch norm over the first n channels of ``bn`` (running stats are updated in place)."""
    return F.batch_norm(
        x,
        bn.running_mean[:n] if bn.running_mean is not None else None,
        bn.running_var[:n] if bn.running_var is not None else None,
        bn.weight[:n],
        bn.bias[:n],
        bn.training,
        BN_MOMENTUM,
        bn.eps,
    )


@cache
def _tap_index(h: int, k: int, stride: int) -> tuple[torch.Tensor, int]:
    """For a depthwise conv on an h x h map: which kernel tap links each (output, input) pixel pair
    (k*k = no tap)."""
    p = k // 2
    o = (h + 2 * p - k) // stride + 1
    oy, ox = torch.meshgrid(torch.arange(o), torch.arange(o), indexing="ij")
    iy, ix = torch.meshgrid(torch.arange(h), torch.arange(h), indexing="ij")
    ky = iy.reshape(1, -1) - oy.reshape(-1, 1) * stride + p
    kx = ix.reshape(1, -1) - ox.reshape(-1, 1) * stride + p
    inside = (ky >= 0) & (ky < k) & (kx >= 0) & (kx < k)
    return torch.where(inside, ky * k + kx, k * k), o


def depthwise(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    """Depthwise conv with 'same' padding. When the kernel is larger than the map (7x7 or 5x5 on 4x4),
    oneDNN's backward is slow on CPU (~3x here), so it runs as a per-channel matrix product instead."""
    n, c, h, _ = x.shape
    k = w.shape[-1]
    if k <= h:
        return F.conv2d(x, w, None, stride, k // 2, 1, c)
    idx, o = _tap_index(h, k, stride)
    taps = torch.cat([w.reshape(c, k * k), w.new_zeros(c, 1)], dim=1)[:, idx]  # (c, o*o, h*h)
    y = torch.bmm(taps, x.permute(1, 2, 3, 0).reshape(c, h * h, n))
    return y.reshape(c, o, o, n).permute(3, 0, 1, 2).contiguous(memory_format=torch.channels_last)


class ConvBN(nn.Sequential):
    """Conv -> BN (-> ReLU6): the unit every quantizer and extractor sees."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)

    @property
    def conv(self) -> nn.Conv2d:
        return self[0]  # type: ignore[return-value]

    @property
    def bn(self) -> nn.BatchNorm2d:
        return self[1]  # type: ignore[return-value]


class MBConv(nn.Module):
    """A static inverted-residual block: expand 1x1, depthwise kxk, project 1x1 (linear)."""

    def __init__(self, c_in: int, c_out: int, mid: int, k: int, stride: int) -> None:
        super().__init__()
        self.expand = ConvBN(c_in, mid, 1)
        self.dw = ConvBN(mid, mid, k, stride, groups=mid)
        self.project = ConvBN(mid, c_out, 1, act=False)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.residual else y


class Subnet(nn.Module):
    """A standalone network of one candidate: stem, MBConv blocks, 1x1 tail conv, pool, classifier."""

    def __init__(self, space: SearchSpace, cand: Candidate) -> None:
        super().__init__()
        self.space_name, self.candidate = space.name, cand
        head = space.head[0]
        self.stem = ConvBN(head.c_in, head.c_out, head.kernel, head.stride)
        blocks = []
        for b, blk in space.active_blocks(cand):
            c_in, c_out, _, stride = space.block_io[b]
            blocks.append(MBConv(c_in, c_out, blk.middle, blk.kernel, stride))
        self.blocks = nn.Sequential(*blocks)
        tail = space.tail[0]  # the 1x1 conv; the classifier follows the pool (priced or not)
        self.tail = ConvBN(tail.c_in, tail.c_out, 1)
        self.classifier = nn.Linear(tail.c_out, space.num_classes)

    def entry(self, x: torch.Tensor) -> torch.Tensor:
        """The fixed layers before the searched blocks."""
        return self.stem(x)

    def fixed_units(self) -> list[nn.Sequential]:
        """The conv units outside the searched blocks (quantized at fixed bits)."""
        return [self.stem, self.tail]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.tail(self.blocks(self.entry(x))), 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class ElasticMBConv(nn.Module):
    """An MBConv block whose kernel (3/5/7) and middle width are chosen per forward call."""

    def __init__(self, c_in: int, c_out: int, max_mid: int, stride: int, max_kernel: int = 7) -> None:
        super().__init__()
        self.c_in, self.c_out, self.stride, self.max_kernel = c_in, c_out, stride, max_kernel
        self.expand = nn.Conv2d(c_in, max_mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(max_mid)
        self.dw_weight = nn.Parameter(torch.empty(max_mid, 1, max_kernel, max_kernel))
        nn.init.kaiming_normal_(self.dw_weight, mode="fan_out")
        self.bn2 = nn.BatchNorm2d(max_mid)
        self.project = nn.Conv2d(max_mid, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        # kernel transforms, smallest first: 7->5 (25x25), 5->3 (9x9)
        self.transforms = nn.ParameterDict(
            {str(k): nn.Parameter(torch.eye(k * k)) for k in range(max_kernel - 2, 1, -2)}
        )
        self.residual = stride == 1 and c_in == c_out

    def dw_kernel(self, k: int) -> torch.Tensor:
        """The k x k depthwise weight: centre of the larger one, through the learned transform."""
        w = self.dw_weight
        size = self.max_kernel
        while size > k:
            size -= 2
            centre = w[:, :, 1:-1, 1:-1].reshape(w.shape[0], size * size)
            w = (centre @ self.transforms[str(size)]).reshape(w.shape[0], 1, size, size)
        return w

    def forward(self, x: torch.Tensor, kernel: int, mid: int) -> torch.Tensor:
        h = F.relu6(_bn(F.conv2d(x, self.expand.weight[:mid]), self.bn1, mid))
        h = depthwise(h, self.dw_kernel(kernel)[:mid], self.stride)
        h = F.relu6(_bn(h, self.bn2, mid))
        y = _bn(F.conv2d(h, self.project.weight[:, :mid]), self.bn3, self.c_out)
        return x + y if self.residual else y

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Reorder middle channels by importance (L1 of project weights), so narrow = most important."""
        order = self.project.weight.abs().sum(dim=(0, 2, 3)).argsort(descending=True)
        self.expand.weight.copy_(self.expand.weight[order])
        self.dw_weight.copy_(self.dw_weight[order])
        self.project.weight.copy_(self.project.weight[:, order])
        for bn in (self.bn1, self.bn2):
            for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                t.copy_(t[order])

    @torch.no_grad()
    def export(self, blk: Block) -> MBConv:
        m = MBConv(self.c_in, self.c_out, blk.middle, blk.kernel, self.stride)
        m.expand.conv.weight.copy_(self.expand.weight[: blk.middle])
        m.dw.conv.weight.copy_(self.dw_kernel(blk.kernel)[: blk.middle])
        m.project.conv.weight.copy_(self.project.weight[:, : blk.middle])
        for dst, src, n in (
            (m.expand.bn, self.bn1, blk.middle),
            (m.dw.bn, self.bn2, blk.middle),
            (m.project.bn, self.bn3, self.c_out),
        ):
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(dst, name).copy_(getattr(src, name)[:n])
        return m


class Supernet(nn.Module):
    """All subnets of a space in one set of weights."""

    def __init__(self, space: SearchSpace | str = "fmnist", data: str = "fmnist") -> None:
        super().__init__()
        self.space = get_space(space)
        self.data = data  # the images it is trained on, and so measured on (see apqopt.supernet.data)
        sp = self.space
        head = sp.head[0]
        self.stem = ConvBN(head.c_in, head.c_out, head.kernel, head.stride)
        self.blocks = nn.ModuleList(
            ElasticMBConv(c_in, c_out, max(sp.middle_choices[b]), stride, max(sp.kernels))
            for b, (c_in, c_out, _, stride) in enumerate(sp.block_io)
        )
        tail = sp.tail[0]
        self.tail = ConvBN(tail.c_in, tail.c_out, 1)
        self.classifier = nn.Linear(tail.c_out, sp.num_classes)

    subnet_type: type[Subnet] = Subnet
    fixed = ("stem", "tail", "classifier")  # modules every subnet copies whole

    def entry(self, x: torch.Tensor) -> torch.Tensor:
        """The fixed layers before the searched blocks."""
        return self.stem(x)

    def forward(self, x: torch.Tensor, cand: Candidate) -> torch.Tensor:
        x = self.entry(x)
        for b, blk in self.space.active_blocks(cand):
            x = self.blocks[b](x, blk.kernel, blk.middle)
        x = F.adaptive_avg_pool2d(self.tail(x), 1).flatten(1)
        return self.classifier(x)

    def sort_channels(self) -> None:
        for blk in self.blocks:
            blk.sort_channels()

    @torch.no_grad()
    def extract(self, cand: Candidate) -> Subnet:
        """A standalone copy of the candidate's weights (bits are applied later by quantization)."""
        self.space.validate(cand)
        net = self.subnet_type(self.space, cand)
        for name in self.fixed:
            getattr(net, name).load_state_dict(getattr(self, name).state_dict())
        for i, (b, blk) in enumerate(self.space.active_blocks(cand)):
            net.blocks[i].load_state_dict(self.blocks[b].export(blk).state_dict())
        return net.to(devices.of(self), memory_format=torch.channels_last)
