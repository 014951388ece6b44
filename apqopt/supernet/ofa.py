"""APQ's ImageNet supernet: once-for-all's elastic MobileNetV2 (``imagenet-OFA``) and APQ's
quantization-aware variant of it, read into apqopt's supernet for the ``apq-mbv2`` space.

Why: APQ's own search runs on these weights; with them, ``apqopt supernet eval``, ``collect`` and
``verify`` measure APQ's subnets on a user's ImageNet copy with apqopt's code. The checkpoint's
layout and its semantics (``../shared/DESIGN.md``, "APQ's ImageNet supernet") map onto apqopt's
supernet one to one -- the same centre-crop kernel transforms, first-``m`` channel selection and depth
rule -- with two additions: the fixed block ``blocks.0`` (a 3x3 depthwise conv and a 1x1 projection,
expand 1) between the stem and the searched blocks, and BN's eps of 1e-3.

Which quantizer: the weights are read from either form; measuring a quantized candidate applies
apqopt's quantizer (per-channel weights with KL clipping, calibrated activations; apqopt.supernet.quant),
not APQ's learned per-tensor ranges. The variant's ``weight_range``/``activation_range`` values are
checked and kept in :attr:`OFASupernet.apq_ranges_` (layer name -> (weight, activation) range).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from apqopt.errors import ConfigError
from apqopt.space import Candidate, SearchSpace, get_space
from apqopt.supernet.network import ConvBN, Subnet, Supernet
from apqopt.weights import check_weights

log = logging.getLogger(__name__)
BN_EPS = 1e-3  # once-for-all's BN eps (PyTorch's default is 1e-5)
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_SPELLINGS = ((".conv.conv.", ".conv."), (".bn.bn.", ".bn."), (".linear.linear.", ".linear."))


class HeadBlock(nn.Module):
    """``blocks.0``: a fixed MBConv with expand 1 (depthwise 3x3, projection), no residual."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.dw = ConvBN(c_in, c_in, 3, 1, groups=c_in)
        self.project = ConvBN(c_in, c_out, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.dw(x))


def _ofa_eps(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = BN_EPS


class OFASubnet(Subnet):
    """A subnet of APQ's supernet: apqopt's subnet with ``blocks.0`` after the stem."""

    def __init__(self, space: SearchSpace, cand: Candidate) -> None:
        super().__init__(space, cand)
        self.head_block = HeadBlock(space.head[0].c_out, space.stem_channels)
        _ofa_eps(self)

    def entry(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_block(self.stem(x))

    def fixed_units(self) -> list[nn.Sequential]:
        return [self.stem, self.head_block.dw, self.head_block.project, self.tail]  # APQ: fixed at W8A8


class OFASupernet(Supernet):
    """apqopt's supernet with APQ's fixed first block; filled by :func:`load_ofa_supernet`."""

    subnet_type = OFASubnet
    fixed = ("stem", "head_block", "tail", "classifier")

    def __init__(self, space: SearchSpace | str = "apq-mbv2", data: str = "") -> None:
        super().__init__(space, data)
        self.head_block = HeadBlock(self.space.head[0].c_out, self.space.stem_channels)
        self.apq_ranges_: dict[str, tuple[float, float]] = {}
        _ofa_eps(self)

    def entry(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_block(self.stem(x))


def _conv_bn(ours: str, theirs: str, conv_shape: tuple[int, ...]) -> dict[str, tuple[str, tuple[int, ...]]]:
    n = conv_shape[0]
    out = {f"{theirs}.conv.weight": (f"{ours}.0.weight", conv_shape)}
    for k in BN_KEYS:
        out[f"{theirs}.bn.{k}"] = (f"{ours}.1.{k}", () if k == "num_batches_tracked" else (n,))
    return out


def layout(space: SearchSpace | str = "apq-mbv2") -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every key of the fp checkpoint (one spelling: ``.conv.``, ``.bn.``, ``.linear.``) -> (apqopt's
    parameter name, shape). Derived from the space, so it is checked against the published layout."""
    sp = get_space(space)
    head, tail = sp.head[0], sp.tail[0]
    keys = _conv_bn("stem", "first_conv", (head.c_out, head.c_in, head.kernel, head.kernel))
    mb = "blocks.0.mobile_inverted_conv"
    keys |= _conv_bn("head_block.dw", f"{mb}.depth_conv", (head.c_out, 1, 3, 3))
    keys |= _conv_bn("head_block.project", f"{mb}.point_linear", (sp.stem_channels, head.c_out, 1, 1))
    k = max(sp.kernels)
    for b, (c_in, c_out, _, _) in enumerate(sp.block_io):
        m, theirs, ours = max(sp.middle_choices[b]), f"blocks.{b + 1}.mobile_inverted_conv", f"blocks.{b}"
        keys[f"{theirs}.inverted_bottleneck.conv.weight"] = (f"{ours}.expand.weight", (m, c_in, 1, 1))
        keys[f"{theirs}.depth_conv.conv.weight"] = (f"{ours}.dw_weight", (m, 1, k, k))
        keys[f"{theirs}.point_linear.conv.weight"] = (f"{ours}.project.weight", (c_out, m, 1, 1))
        for size in range(k, 3, -2):
            t = (size - 2) ** 2
            keys[f"{theirs}.depth_conv.conv.{size}to{size - 2}_matrix"] = (f"{ours}.transforms.{size - 2}", (t, t))
        for part, bn, n in (
            ("inverted_bottleneck", "bn1", m),
            ("depth_conv", "bn2", m),
            ("point_linear", "bn3", c_out),
        ):
            for key in BN_KEYS:
                keys[f"{theirs}.{part}.bn.{key}"] = (f"{ours}.{bn}.{key}", () if key == "num_batches_tracked" else (n,))
    keys |= _conv_bn("tail", "feature_mix_layer", (tail.c_out, tail.c_in, 1, 1))
    keys["classifier.linear.weight"] = ("classifier.weight", (sp.num_classes, tail.c_out))
    keys["classifier.linear.bias"] = ("classifier.bias", (sp.num_classes,))
    return keys


def canonical(key: str) -> str:
    """One spelling of a checkpoint key (APQ's code writes wrapped layers both ways)."""
    key = key.removeprefix("module.")  # saved from nn.DataParallel
    for long, short in _SPELLINGS:
        key = key.replace(long, short)
    return key


def _read(src: str | Path | Mapping[str, Any], name: str | None) -> tuple[dict[str, torch.Tensor], str]:
    if isinstance(src, Mapping):
        state, where = dict(src), name or "state dict"
    else:
        where = str(src)
        try:
            state = torch.load(src, map_location="cpu", weights_only=True)  # tensors only: no code runs
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise ConfigError(f"{where}: not a PyTorch checkpoint ({' '.join(str(exc).split())[:160]})") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = dict(state["state_dict"])
    if not isinstance(state, Mapping):
        raise ConfigError(f"{where}: holds no state dict")
    return {canonical(k): v for k, v in state.items()}, where


def _names(keys: list[str]) -> str:
    return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


def load_ofa_supernet(
    src: str | Path | Mapping[str, Any], space: SearchSpace | str = "apq-mbv2", name: str | None = None
) -> OFASupernet:
    """APQ's supernet (``imagenet-OFA``, or its quantization-aware variant) from a checkpoint file or a
    state dict (``name``: how errors call a state dict, e.g. the file it was read from). Unknown, missing
    and misshapen keys are named in one :class:`ConfigError`."""
    state, where = _read(src, name)
    check_weights(state, where)  # a foreign file carries no checksum of ours: finite values at least
    expected = layout(space)
    ranges = {k for k in state if k.endswith((".weight_range", ".activation_range"))}
    unknown = sorted(k for k in state if k not in expected and k not in ranges)
    missing = sorted(k for k in expected if k not in state)
    if unknown or missing:
        parts = [f"{len(unknown)} unknown keys ({_names(unknown)})"] if unknown else []
        parts += [f"{len(missing)} missing ({_names(missing)})"] if missing else []
        raise ConfigError(f"{where}: not APQ's supernet layout: {'; '.join(parts)}")
    bad = [f"{k} is {tuple(state[k].shape)}, not {s}" for k, (_, s) in expected.items() if tuple(state[k].shape) != s]
    if bad:
        raise ConfigError(f"{where}: {len(bad)} keys of the wrong shape ({_names(bad)})")
    layers = {k.rsplit(".", 1)[0] for k in ranges}
    convs = {k.rsplit(".", 1)[0] for k in expected if k.endswith(("conv.weight", "linear.weight"))}
    if ranges and (layers != convs or len(ranges) != 2 * len(convs)):
        odd = sorted(layers ^ convs) or sorted(ranges)
        raise ConfigError(f"{where}: weight_range/activation_range not on every conv ({_names(odd)})")
    net = OFASupernet(space)
    params = {**dict(net.named_parameters()), **dict(net.named_buffers())}
    with torch.no_grad():
        for key, (ours, _) in expected.items():
            value = state[key].to(params[ours].dtype)
            if ".transforms." in ours:
                value = value.T  # theirs: y = x M^T (a linear layer); ours: y = x M
            params[ours].copy_(value.reshape(params[ours].shape))
    net.apq_ranges_ = {
        layer: (float(state[f"{layer}.weight_range"]), float(state[f"{layer}.activation_range"]))
        for layer in sorted(layers)
    }
    kind = "APQ's quantization-aware variant" if ranges else "once-for-all's fp weights"
    log.info("%s: %s (measured with apqopt's quantizer)", where, kind)
    return net.to(memory_format=torch.channels_last).eval()


def is_ofa_checkpoint(state: Mapping[str, Any]) -> bool:
    """Whether a loaded checkpoint is in once-for-all's layout (rather than apqopt's own file)."""
    inner = state.get("state_dict", state)
    return isinstance(inner, Mapping) and any(re.match(r"(module\.)?first_conv\.", str(k)) for k in inner)
