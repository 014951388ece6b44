"""Export what a search found: the candidate's network as it was measured, as a standalone file.

Why: a search ends in a candidate, but a user deploys a network. The network exported is exactly the one
:func:`apqopt.supernet.collect.measure` measured (extracted from the supernet, BN re-estimated, quantized
under the candidate's policy and fine-tuned), with its fake quantization made deployable:

* weights are folded: each quantized conv stores its weights already rounded to their grid (per output
  channel, the candidate's bits), in float32;
* activations keep their quantizers: at 8 bits as ``torch.fake_quantize_per_tensor_affine`` (ONNX
  ``QuantizeLinear``/``DequantizeLinear`` pairs, int8 or uint8), at other widths (4, 6 bits: no ONNX
  integer type holds them in every runtime) as the same arithmetic in float32 (``Div``, ``Clip``,
  ``Round``, ``Mul``).

Formats, by the output's suffix: ``.onnx`` (torch's ONNX exporter; needs the ``export`` extra: onnx,
onnxscript; check it with onnxruntime) and ``.pt2`` (``torch.export``: load with ``torch.export.load``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from apqopt.errors import ConfigError
from apqopt.fileio import check_output
from apqopt.supernet.quant import QuantConv2d, fake_quant

log = logging.getLogger(__name__)
FORMATS = (".onnx", ".pt2")


class DeployedConv2d(nn.Module):
    """A quantized conv with folded weights and an exportable activation quantizer."""

    def __init__(self, q: QuantConv2d) -> None:
        super().__init__()
        conv = copy.deepcopy(q.conv)
        with torch.no_grad():
            conv.weight.copy_(fake_quant(conv.weight, q.w_clip.view(-1, 1, 1, 1), q.w_bits, True))
        self.conv = conv
        self.bits, self.signed = q.a_bits, q.a_signed
        levels = 2 ** (q.a_bits - 1) - 1 if q.a_signed else 2**q.a_bits - 1
        self.levels, self.qmin = levels, -levels if q.a_signed else 0
        self.scale = float(q.a_clip) / levels
        self.qdq = False  # 8-bit activations as one Q/DQ pair (set for ONNX); else the arithmetic, exactly

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.qdq and self.bits == 8:
            x = _quant8_op()(x, self.scale, self.signed)
        else:
            x = torch.round(torch.clamp(x / self.scale, self.qmin, self.levels)) * self.scale
        return self.conv(x)


@functools.cache
def _quant8_op() -> Any:
    """``apqopt::quant8``: 8-bit activation quantization as one op that ONNX export turns into Clip +
    QuantizeLinear + DequantizeLinear (defined on first use: importing apqopt registers nothing)."""

    @torch.library.custom_op("apqopt::quant8", mutates_args=())
    def quant8(x: torch.Tensor, scale: float, signed: bool) -> torch.Tensor:
        low, lo, hi = (-127, -128, 127) if signed else (0, 0, 255)  # symmetric: -128 stays unused
        return torch.fake_quantize_per_tensor_affine(x.clamp(low * scale, hi * scale), scale, 0, lo, hi)

    @quant8.register_fake
    def _(x: torch.Tensor, scale: float, signed: bool) -> torch.Tensor:
        return torch.empty_like(x)

    return quant8


def _quant8_onnx(x: Any, scale: float, signed: bool) -> Any:
    import onnx
    from onnxscript import opset18 as op

    zero = onnx.helper.make_tensor("zero", onnx.TensorProto.INT8 if signed else onnx.TensorProto.UINT8, [], [0])
    s, zp = op.Constant(value_float=scale), op.Constant(value=zero)
    lo = op.Constant(value_float=(-127 if signed else 0) * scale)
    hi = op.Constant(value_float=(127 if signed else 255) * scale)
    return op.DequantizeLinear(op.QuantizeLinear(op.Clip(x, lo, hi), s, zp), s, zp)


def deployable(net: nn.Module) -> nn.Module:
    """A copy of a measured network with every fake-quantized conv made deployable (see the module)."""
    out = copy.deepcopy(net).eval()
    for module in list(out.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, QuantConv2d):
                setattr(module, child_name, DeployedConv2d(child))
    for p in out.parameters():
        p.requires_grad_(False)  # a deployed network is not trained (and export traces no gradient ops)
    for t in [*out.parameters(), *out.buffers()]:
        t.data = t.data.clone()  # own storage: a slice of the supernet's weights would be saved whole
    return out.to(memory_format=torch.contiguous_format)


def check_out(path: str | Path, overwrite: bool = False) -> Path:
    """The output path, checked before any work: a known suffix, and no file replaced unasked."""
    import importlib.util

    path = Path(path)
    if path.suffix not in FORMATS:
        raise ConfigError(f"{path}: export writes {' or '.join(FORMATS)} files")
    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if path.suffix == ".onnx" and missing:  # checked now, not after minutes of building the network
        raise ConfigError(f"{path}: ONNX export needs {', '.join(missing)}: pip install 'apqopt[export]'")
    return check_output(path, overwrite)


def export_candidate(
    supernet: Any, cand: Any, path: str | Path, kind: str = "quant", seed: int = 0, overwrite: bool = False
) -> Path:
    """Build the network ``measure`` measures for ``cand`` (``kind`` quant: quantized and fine-tuned with
    ``seed``; fp: full precision) and write it to ``path``. An existing file is kept unless ``overwrite``."""
    from apqopt.supernet.collect import CollectConfig, measured_network
    from apqopt.supernet.data import load_split, preprocessing

    path = check_out(path, overwrite)
    net = measured_network(supernet, cand, CollectConfig(kind=kind, space=supernet.space.name), seed)  # type: ignore[arg-type]
    example = load_split("val", supernet.data, supernet.space.name).images[:2]
    meta = {
        "preprocessing": preprocessing(supernet.data, supernet.space.name),
        "candidate": json.loads(cand.to_json()),  # architecture and bit policy
        "kind": kind,
        "space": supernet.space.name,
    }
    return export(net, path, example, meta)


META_KEY = "apqopt"  # the key of the JSON an exported file carries (ONNX metadata_props; a .pt2 extra file)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """What :func:`export_candidate` wrote into a file: preprocessing (input shape, mean, std, classes),
    the candidate (architecture and policy), kind and space; ``{}`` for a file without it."""
    path = Path(path)
    if path.suffix == ".pt2":
        extra = {META_KEY: ""}
        torch.export.load(str(path), extra_files=extra)
        return json.loads(extra[META_KEY]) if extra[META_KEY] else {}
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    return json.loads(props[META_KEY]) if META_KEY in props else {}


def run_exported(path: str | Path, images: torch.Tensor, batch: int = 500) -> np.ndarray:
    """Logits of an exported file on ``images``: ``.onnx`` through onnxruntime (its default graph
    optimizations, as a deployment runs it), ``.pt2`` through ``torch.export.load``."""
    path = Path(path)
    chunks = [images[i : i + batch] for i in range(0, len(images), batch)]
    if path.suffix == ".pt2":
        module = torch.export.load(str(path)).module()
        with torch.no_grad():
            return np.concatenate([module(c).numpy() for c in chunks])
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("running an ONNX file needs the export extra: pip install 'apqopt[export]'") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: c.numpy()})[0] for c in chunks])


@contextlib.contextmanager
def _exporter_quiet() -> Iterator[None]:
    """Hide the exporter's notes that concern torch, not the user (torchvision absent, a deprecation in
    its own tree utilities), for the duration of one export only."""
    noisy = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = noisy.level
    noisy.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        noisy.setLevel(level)


def export(net: nn.Module, path: str | Path, example: torch.Tensor, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``net`` (made deployable) to ``path``; the format follows the suffix (``.onnx`` or ``.pt2``).
    ``example``: a batch of inputs of the right shape (any batch size works in the file). ``metadata`` goes
    into the file as JSON (ONNX ``metadata_props``, a ``.pt2`` extra file) under ``META_KEY``."""
    text = json.dumps(metadata or {}, sort_keys=True)
    path = check_out(path, overwrite=True)  # the format; whether to replace is the caller's decision
    model = deployable(net).cpu()  # a file is written from the CPU, wherever the network was measured
    example = example[:2].clone()  # saved with a .pt2 program: a view would carry its whole dataset
    batch = ({0: torch.export.Dim("batch", min=1, max=65536)},)  # any batch size; the rest is the space's
    from apqopt.fileio import atomic_open

    with torch.no_grad(), _exporter_quiet():
        if path.suffix == ".pt2":
            program = torch.export.export(model, (example,), dynamic_shapes=batch)
            with atomic_open(path) as fh:
                torch.export.save(program, fh, extra_files={META_KEY: text})
        else:
            try:
                import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
            except ImportError:
                raise ConfigError("ONNX export needs the export extra: pip install 'apqopt[export]'") from None
            for m in model.modules():
                if isinstance(m, DeployedConv2d):
                    m.qdq = True
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                verbose=False,
                optimize=True,
                dynamic_shapes=batch,
                custom_translation_table={_quant8_op()._opoverload: _quant8_onnx},
            )
            proto = program.model_proto
            proto.metadata_props.add(key=META_KEY, value=text)
            with atomic_open(path) as fh:
                fh.write(proto.SerializeToString())
    log.info("exported %s", path)
    return path
