"""APQ's formats: the spec dicts its code passes around (``ks``, ``e``, ``d``, ``*_bits_setting``).

Why a module of its own: the space is apqopt's; APQ's dicts are one outside format among several
(LUT JSON, predictor and supernet checkpoints), converted at the edge.
"""

from __future__ import annotations

import math
from typing import Any

from apqopt.space import BIT_FIELDS, Block, Candidate, InvalidCandidateError, SearchSpace

APQ_BIT_KEYS: dict[str, str] = {f: f"{f}_bits_setting" for f in BIT_FIELDS}


def to_apq_spec(space: SearchSpace, cand: Candidate) -> dict[str, Any]:
    """APQ's spec dict: ks, e (middle / C_in), d, and the four *_bits_setting lists.

    Blocks beyond a stage's depth get APQ's filler values (kernel 3, e 4, 8 bits), as its
    converter does.
    """
    space.validate(cand)
    spec: dict[str, Any] = {"wid": None, "ks": [], "e": [], "d": list(cand.depths)}
    for key in APQ_BIT_KEYS.values():
        spec[key] = []
    b0 = 0
    for s, blocks in zip(space.stages, cand.stages):
        for j in range(s.max_depth):
            b = b0 + j
            blk = blocks[j] if j < len(blocks) else None
            c_in = space.block_io[b][0]
            spec["ks"].append(blk.kernel if blk else 3)
            spec["e"].append(blk.middle / c_in if blk else space.middle_choices[b][0] / c_in)
            for f, key in APQ_BIT_KEYS.items():
                spec[key].append(getattr(blk, f) if blk else 8)
        b0 += s.max_depth
    return spec


def from_apq_spec(space: SearchSpace, spec: dict[str, Any]) -> Candidate:
    """Read APQ's spec dict. A stage with a single allowed depth takes it whatever ``d`` says
    (APQ samples ``d`` for its one-block last stage too and ignores it). Values are checked, never
    coerced: ``ks: 3.5`` or bits ``8.9`` are errors naming the key and position, not 3 and 8."""
    if not isinstance(spec, dict):
        raise InvalidCandidateError(
            f"APQ spec must be a JSON object (ks, e, d, *_bits_setting), got {type(spec).__name__}"
        )
    try:
        ks, e, d = (_numbers(spec, k, integral=k != "e") for k in ("ks", "e", "d"))
        bits = {f: _numbers(spec, key, integral=True) for f, key in APQ_BIT_KEYS.items()}
    except KeyError as exc:
        raise InvalidCandidateError(f"APQ spec is missing key {exc}") from exc
    for name, seq in [("ks", ks), ("e", e), *[(APQ_BIT_KEYS[f], v) for f, v in bits.items()]]:
        if len(seq) != space.n_blocks:
            raise InvalidCandidateError(
                f"space '{space.name}': APQ spec '{name}' must have {space.n_blocks} entries, got {len(seq)}"
            )
    if len(d) != space.n_stages:
        raise InvalidCandidateError(
            f"space '{space.name}': APQ spec 'd' must have {space.n_stages} entries, got {len(d)}"
        )
    stages, b0 = [], 0
    for si, s in enumerate(space.stages):
        depth = s.depths[0] if len(s.depths) == 1 else int(d[si])
        blocks = []
        for j in range(min(depth, s.max_depth)):
            b = b0 + j
            c_in = space.block_io[b][0]
            choices = space.middle_choices[b]
            middle = min(choices, key=lambda m: abs(m - float(e[b]) * c_in))
            if abs(middle - float(e[b]) * c_in) > 4:
                raise space.allowed_error("e", f"stage {si} block {b}", e[b], [m / c_in for m in choices])
            blocks.append(Block(int(ks[b]), middle, *(int(bits[f][b]) for f in BIT_FIELDS)))
        if depth > s.max_depth:
            raise space.allowed_error("depth", f"stage {si}", depth, s.depths)
        stages.append(tuple(blocks))
        b0 += s.max_depth
    return space.candidate(stages)


def _numbers(spec: dict[str, Any], key: str, integral: bool) -> list[float]:
    """``spec[key]`` as a list of finite numbers (integers where ``integral``); anything else is named."""
    seq = spec[key]
    if not isinstance(seq, list):
        raise InvalidCandidateError(f"APQ spec '{key}' must be a list, got {seq!r}")
    for i, v in enumerate(seq):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or (integral and v != int(v)):
            want = "an integer" if integral else "a finite number"
            raise InvalidCandidateError(f"APQ spec '{key}'[{i}] must be {want}, got {v!r}")
    return seq
