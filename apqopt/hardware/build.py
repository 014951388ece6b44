"""Build a space's lookup table from a cost model: every layer shape x every bit pair, no gaps.

Why a module of its own: the table is the contract between hardware and search. Whatever model
prices the layers (BitFusion here, the host CPU in `apqopt lut measure`), the builder walks the
same shapes in the same order and writes the same format, so tables regenerate byte-for-byte.
Partial work is kept in a checkpoint file beside the output, so an interrupted build resumes.
"""

from __future__ import annotations

import json
import os
from multiprocessing import get_context
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from apqopt.errors import ConfigError
from apqopt.hardware.bitfusion import BitFusion, BitFusionConfig
from apqopt.hardware.lut import LUT
from apqopt.space import Layer, SearchSpace, get_space


class CostModel(Protocol):
    """What the builder needs from a hardware model."""

    hardware: str

    def layer_cost(self, layer: Layer, first: bool = False) -> tuple[float, float]: ...

    def network_cost(self, layers: list[Layer], first_is_input: bool = True) -> tuple[float, float]: ...


def bitfusion_from_config(path: str | os.PathLike[str] | None) -> BitFusion:
    """A BitFusion model from a JSON config file (keys of :class:`BitFusionConfig`), or the default."""
    if path is None:
        return BitFusion()
    from apqopt.fileio import read_text

    try:
        data = json.loads(read_text(path, "a BitFusion config (JSON)"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"BitFusion config {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"BitFusion config {path} must be a JSON object")
    return BitFusion(BitFusionConfig.from_dict(data))


def _price(args: tuple[CostModel, list[Layer]]) -> list[tuple[float, float]]:
    model, layers = args
    return [model.layer_cost(layer) for layer in layers]


def build_lut(
    space: SearchSpace | str,
    model: CostModel,
    command: str = "",
    workers: int = 1,
    progress: bool = True,
    checkpoint: str | os.PathLike[str] | None = None,
    bits: tuple[int, ...] | None = None,
) -> LUT:
    """Price every layer shape x (W bits, A bits) the space can produce, plus head and tail.

    ``checkpoint``: a JSON-lines file of finished chunks; a rerun skips them (resume).
    """
    space = get_space(space)
    bits = bits or space.bits
    shapes = space.layer_shapes()
    pairs = [(w, a) for w in bits for a in bits]
    config = {"space": space.name, "bits": list(bits)}
    if isinstance(model, BitFusion):
        config.update(model.config.to_dict())
    elif hasattr(model, "table_config"):
        config.update(model.table_config(space))
    lut = LUT(hardware=model.hardware, config=config, command=command)
    lut.head = model.network_cost(list(space.head), first_is_input=True)
    lut.tail = model.network_cost(list(space.tail), first_is_input=False)

    chunks = [[Layer("lut", *shape, w, a) for shape in shapes] for w, a in pairs]
    done: dict[int, list[tuple[float, float]]] = {}
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    if ckpt and ckpt.exists():
        for line in ckpt.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                break  # a torn last line from a crash: recompute that chunk
            if rec.get("config") == config:
                done[int(rec["chunk"])] = [tuple(x) for x in rec["costs"]]
    todo = [i for i in range(len(chunks)) if i not in done]
    bar = tqdm(total=len(chunks) * len(shapes), desc=f"lut {space.name}", unit="layer", disable=not progress)
    bar.update(len(done) * len(shapes))

    def record(i: int, costs: list[tuple[float, float]]) -> None:
        done[i] = costs
        bar.update(len(costs))
        if ckpt:
            with ckpt.open("a") as fh:
                fh.write(json.dumps({"config": config, "chunk": i, "costs": costs}) + "\n")

    if workers > 1 and len(todo) > 1:
        with get_context("fork").Pool(workers) as pool:
            for i, costs in zip(todo, pool.imap(_price, [(model, chunks[i]) for i in todo])):
                record(i, costs)
    else:
        for i in todo:
            record(i, _price((model, chunks[i])))
    bar.close()
    for i, chunk in enumerate(chunks):
        for layer, cost in zip(chunk, done[i]):
            lut.entries[(*layer.shape, layer.w_bits, layer.a_bits)] = (float(cost[0]), float(cost[1]))
    if ckpt and ckpt.exists():
        ckpt.unlink()
    return lut
