"""Mixed-precision fake quantization (APQ eq. 5, following HAQ) and the short quantization-aware fine-tune.

Why this form: the bits a candidate chooses apply to each block's pointwise convs (expand and
project share ``pw_w``/``pw_a``) and to its depthwise conv (``dw_w``/``dw_a``) separately, exactly as
the encoding says, so the accuracy the predictor learns is the accuracy of that policy.

* Weights: linear symmetric quantization per output channel; each channel's clipping value minimises
  the KL divergence between the histogram of its weights and that histogram quantized to the
  available levels (entropy calibration, as HAQ/TensorRT do).
* Activations: the input of each conv is quantized with one clipping value calibrated the same way on
  a calibration batch; inputs after ReLU6 are non-negative and use [0, c]; block inputs (after the
  linear project conv) can be negative and use [-c, c].
* Gradients: straight-through estimator inside the clipping range.
* The stem and tail convs run at 8 bits (APQ keeps the first and last layers at 8 bits); the
  classifier stays in floating point.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from apqopt import devices
from apqopt.errors import ConfigError
from apqopt.space import Candidate
from apqopt.supernet.network import Subnet, depthwise

HIST_BINS = 256
# Which fake-quantization kernel measured a record (same values as the plain ops; see _FakeQuant).
QUANTIZER = "fused-v1"


@torch.no_grad()
def kl_clip(values: torch.Tensor, bits: int, signed: bool, bins: int = HIST_BINS, step: int = 4) -> torch.Tensor:
    """Per-row clipping value that minimises KL(P || Q) between the histogram P of |values| and its
    quantization Q to the available levels. ``values`` is (rows, n); returns (rows,), on the CPU (a
    histogram search: small, sequential, and the same numbers on every device)."""
    values = values.detach().cpu()
    v = values.abs() if signed else values.clamp(min=0)
    top = v.amax(dim=1).clamp(min=1e-12)
    idx = (v / top[:, None] * bins).long().clamp(max=bins - 1)
    hist = torch.zeros(v.shape[0], bins, dtype=torch.float64).scatter_add_(
        1, idx, torch.ones_like(idx, dtype=torch.float64)
    )
    levels = 2 ** (bits - 1) if signed else 2**bits
    levels = min(levels, bins)
    cands = list(range(levels, bins + 1, step))
    if cands[-1] != bins:
        cands.append(bins)
    best_kl = torch.full((v.shape[0],), float("inf"), dtype=torch.float64)
    best_t = torch.full((v.shape[0],), bins, dtype=torch.long)
    for t in cands:
        p = hist[:, :t].clone()
        p[:, t - 1] += hist[:, t:].sum(dim=1)
        group = (torch.arange(t) * levels // t).long()  # bin -> quantization level
        kept = hist[:, :t]
        mass = torch.zeros(v.shape[0], levels, dtype=torch.float64).index_add_(1, group, kept)
        nonzero = torch.zeros(v.shape[0], levels, dtype=torch.float64).index_add_(1, group, (kept > 0).double())
        q = torch.where(kept > 0, (mass / nonzero.clamp(min=1))[:, group], torch.zeros_like(kept))
        p = p / p.sum(dim=1, keepdim=True).clamp(min=1e-12)
        q = q / q.sum(dim=1, keepdim=True).clamp(min=1e-12)
        kl = torch.where(p > 0, p * (p.clamp(min=1e-12) / q.clamp(min=1e-6)).log(), torch.zeros_like(p)).sum(dim=1)
        better = kl < best_kl
        best_kl = torch.where(better, kl, best_kl)
        best_t = torch.where(better, torch.full_like(best_t, t), best_t)
    return (best_t.float() / bins * top).float()


class _FakeQuant(torch.autograd.Function):
    """Fake quantization in four in-place passes with a straight-through gradient inside the clipping
    range. Why not plain tensor ops: quantized measurements spend most of their time here (eval, BN
    re-estimation, fine-tune), and the plain form takes ~10 passes and allocations per call and, on
    1-channel inputs, silently drops the network out of ``channels_last``. Exactly equal in value to
    ``round(clamp(x, lo, clip) / s) * s`` with ``s = clip / levels`` (tested)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, clip: torch.Tensor, bits: int, signed: bool
    ) -> torch.Tensor:
        levels = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
        qmin = -levels if signed else 0
        scale = clip / levels
        out = torch.empty_like(x)  # keeps x's strides (channels_last stays channels_last)
        torch.div(x, scale, out=out)
        out.clamp_(qmin, levels).round_().mul_(scale)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(x, clip)
            ctx.signed = signed  # type: ignore[attr-defined]
        return out

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        x, clip = ctx.saved_tensors  # type: ignore[attr-defined]
        lo = -clip if ctx.signed else torch.zeros_like(clip)  # type: ignore[attr-defined]
        if clip.numel() == 1:  # one fused pass (zero at and beyond the clipping values)
            return torch.ops.aten.hardtanh_backward(grad, x, float(lo), float(clip)), None, None, None
        return grad * ((x > lo) & (x < clip)), None, None, None


def fake_quant(x: torch.Tensor, clip: torch.Tensor, bits: int, signed: bool) -> torch.Tensor:
    """Linear quantization to ``bits`` within [-clip, clip] (signed) or [0, clip]; STE gradient.

    ``clip`` is a scalar (per tensor) or broadcasts along dim 0 (per output channel)."""
    return _FakeQuant.apply(x, clip, bits, signed)


def fake_quant_plain(x: torch.Tensor, clip: torch.Tensor, bits: int, signed: bool) -> torch.Tensor:
    """The same quantizer written in plain tensor ops: the definition ``fake_quant`` is tested
    against, and the baseline of ``benchmarks/bench_supernet.py`` (it was the implementation behind
    the first quantized records; see README, Supernet and accuracy data)."""
    levels = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    lo = -clip if signed else torch.zeros_like(clip)
    xc = torch.maximum(torch.minimum(x, clip), lo)
    scale = clip / levels
    q = torch.round(xc / scale) * scale
    return xc + (q - xc).detach()


class QuantConv2d(nn.Module):
    """A conv whose weights (per output channel) and input activations are fake-quantized."""

    def __init__(self, conv: nn.Conv2d, w_bits: int, a_bits: int) -> None:
        super().__init__()
        self.conv = conv
        self.w_bits, self.a_bits = w_bits, a_bits
        self.register_buffer("w_clip", torch.ones(conv.out_channels))
        self.register_buffer("a_clip", torch.ones(()))
        self.a_signed = True
        self.calibrating = False
        self._calib: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            self._calib.append(x.detach().flatten()[:: max(1, x.numel() // 200_000)])
            return self.conv(x)
        xq = fake_quant(x, self.a_clip, self.a_bits, self.a_signed)
        w = self.conv.weight
        wq = fake_quant(w, self.w_clip.view(-1, 1, 1, 1), self.w_bits, True)
        c = self.conv
        if wq.requires_grad and c.groups > 1 and c.groups == c.in_channels and c.bias is None:
            # fine-tune: oneDNN's depthwise backward is slow for kernels larger than the map (~12% of
            # a fine-tune); its forward is faster, so evaluation keeps F.conv2d
            return depthwise(xq, wq, c.stride[0])
        return F.conv2d(xq, wq, c.bias, c.stride, c.padding, c.dilation, c.groups)

    @torch.no_grad()
    def calibrate_weights(self) -> None:
        w = self.conv.weight.detach().reshape(self.conv.out_channels, -1)
        self.w_clip.copy_(kl_clip(w, self.w_bits, signed=True, bins=64, step=2))

    @torch.no_grad()
    def finish_calibration(self) -> None:
        x = torch.cat(self._calib)
        self._calib = []
        self.calibrating = False
        self.a_signed = bool((x < 0).any())
        self.a_clip.copy_(kl_clip(x[None], self.a_bits, signed=self.a_signed)[0])


@dataclass(frozen=True)
class FinetuneConfig:
    """The fixed quantization-aware fine-tune budget every quantized measurement uses."""

    steps: int = 40
    batch_size: int = 64
    lr: float = 0.005
    momentum: float = 0.9
    calib_images: int = 512


def quantize(
    subnet: Subnet,
    cand: Candidate,
    calib: torch.Tensor,
    fixed_bits: int | None = 8,
    operators: set[int] | None = None,
) -> Subnet:
    """A fake-quantized copy of ``subnet`` under the candidate's policy, calibrated on ``calib``.

    ``operators`` limits quantization to those operators (2*i = block i's pointwise convs, 2*i+1 its
    depthwise conv), leaving every other layer in floating point -- OHQ's masked estimation;
    ``fixed_bits=None`` also leaves stem and tail in floating point.
    """
    arch = [(b.kernel, b.middle) for b in cand.blocks]
    if cand.depths != subnet.candidate.depths or arch != [(b.kernel, b.middle) for b in subnet.candidate.blocks]:
        raise ConfigError("quantize: the policy's architecture differs from the subnet's")
    net = copy.deepcopy(subnet)
    if fixed_bits is not None:
        for unit in net.fixed_units():
            unit[0] = QuantConv2d(unit.conv, fixed_bits, fixed_bits)
    for i, (mb, blk) in enumerate(zip(net.blocks, cand.blocks)):
        if operators is None or 2 * i in operators:
            mb.expand[0] = QuantConv2d(mb.expand.conv, blk.pw_w, blk.pw_a)
            mb.project[0] = QuantConv2d(mb.project.conv, blk.pw_w, blk.pw_a)
        if operators is None or 2 * i + 1 in operators:
            mb.dw[0] = QuantConv2d(mb.dw.conv, blk.dw_w, blk.dw_a)
    device = devices.of(subnet)
    net.to(device)  # the new quantizers' buffers join the weights
    qconvs = [m for m in net.modules() if isinstance(m, QuantConv2d)]
    for q in qconvs:
        q.calibrate_weights()
        q.calibrating = True
    net.eval()
    with torch.no_grad():
        net(devices.to(calib, device))
    for q in qconvs:
        q.finish_calibration()
    return net


def finetune(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, cfg: FinetuneConfig, seed: int) -> None:
    """Short quantization-aware fine-tune (SGD, cosine lr) on a seeded stream of training batches."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=cfg.lr, momentum=cfg.momentum)
    net.train()
    device = devices.of(net)
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = 0.5 * cfg.lr * (1 + torch.cos(torch.tensor(torch.pi * step / cfg.steps)).item())
        idx = torch.randint(0, len(labels), (cfg.batch_size,), generator=gen)
        loss = F.cross_entropy(net(devices.to(images[idx], device)), devices.to(labels[idx], device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
