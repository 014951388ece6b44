"""Collecting (architecture, accuracy) and (architecture + policy, quantized accuracy) pairs.

Why it is built this way: collection runs for hours on a CPU, so it must survive being killed and
split across processes without losing, duplicating or half-writing a record.

* The i-th candidate of a dataset is a pure function of (seed, i): a rerun regenerates exactly the
  same sequence and skips the indices already on disk; ``--shard k/n`` takes the indices with
  ``i % n == k`` and writes its own file, so shards never share a file. Indices already in *any*
  file of the dataset are skipped, so a slow shard can be split later (stop ``0/2``, run ``0/4``
  and ``2/4``) without measuring anything twice.
* A dataset file is JSON lines: a header with every setting (a rerun with other settings is refused
  rather than mixed in), then one self-contained record per line, flushed and fsynced. A torn last
  line (a kill mid-write) is cut off before appending.
* Quantized data follows APQ §4: half the candidates are fully random (architecture and policy), the
  other half come in groups of 10 policies sharing one random architecture (indices are grouped by
  ten: even groups random, odd groups shared).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import nn
from tqdm import tqdm

from apqopt.errors import ApqoptError, ConfigError
from apqopt.space import BIT_FIELDS, SearchSpace, adopt, carried, get_space
from apqopt.supernet.data import accuracy_stderr, load_split
from apqopt.supernet.evaluate import accuracy, bn_slice, reestimate_bn
from apqopt.supernet.network import Supernet
from apqopt.supernet.quant import QUANTIZER, FinetuneConfig, finetune, quantize

Kind = Literal["fp", "quant"]
GROUP = 10
_HEADER_START = b'{"type": "header"'  # how every dataset file begins (json.dumps of the header dict)


class DatasetFileError(ApqoptError, ValueError):
    """A dataset file that does not match the requested settings or cannot be read."""


@dataclass(frozen=True)
class CollectConfig:
    kind: Kind
    space: str = "fmnist"
    seed: int = 0
    split: str = "val"
    eval_images: int = 5000
    bn_images: int = 2000
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    supernet: str = ""  # weights_identity() of the supernet: records of other weights never mix
    draw: str = "uniform"  # "cost": candidates spread evenly from the cheapest network to the dearest

    def __post_init__(self) -> None:
        from apqopt.supernet.data import split_size

        if self.draw not in DRAWS:
            raise ConfigError(f"draw must be one of {list(DRAWS)}, got {self.draw!r}")
        if self.kind not in ("fp", "quant"):
            raise ConfigError(f"kind must be 'fp' or 'quant', got {self.kind!r}")
        for name in ("seed", "eval_images", "bn_images"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "seed" else 1):
                raise ConfigError(f"{name} must be an integer >= {0 if name == 'seed' else 1}, got {v!r}")
        if self.eval_images > split_size(self.split):
            raise ConfigError(
                f"eval_images: the {self.split} split has {split_size(self.split)} images, asked {self.eval_images}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.kind == "fp":
            d.pop("finetune")
        if self.draw == "uniform":  # absent: the datasets written before draws existed keep their settings
            d.pop("draw")
        return d


DRAWS = ("uniform", "cost")
# the first candidates of a cost-stratified dataset: the corners a uniform draw almost never reaches
# (level 0: smallest architecture, every layer at the lowest bits; 1: largest, highest bits), then
# the smallest architecture at the highest bits and the largest at the lowest
CORNERS = ((0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0))


def _level(index: int) -> float:
    """The index-th point of the van der Corput sequence in base 2: any prefix spreads evenly over [0, 1)."""
    x, f = 0.0, 0.5
    while index:
        x += f * (index & 1)
        index >>= 1
        f /= 2
    return x


def cost_stratified_genes(space: SearchSpace, seed: int, index: int) -> np.ndarray:
    """The index-th candidate of a cost-stratified draw. Why: a uniform draw puts almost every network in
    the middle of the cost range (the cheapest fmnist network's features lie outside all 800 of the shipped
    training set), and searches go to the ends. Each candidate gets a level t (the corners first, then a
    low-discrepancy sequence over [0, 1) for the architecture, the bits' level within 0.25 of it); every
    gene, whose choices run from cheap to dear, is drawn near t of its range (t x (choices - 1), +- one)."""
    rng = np.random.default_rng([seed, 2_000_003, index])
    if index < len(CORNERS):
        t_arch, t_bits = CORNERS[index]
        jitter = 0.0
    else:  # one level for the whole network (so cost follows it), the bits' a little off the architecture's
        t_arch = _level(index - len(CORNERS) + 1)
        t_bits = float(np.clip(t_arch + rng.uniform(-0.25, 0.25), 0.0, 1.0))
        jitter = 1.0
    card = space.cardinalities
    bits = np.zeros(space.n_genes, dtype=bool)
    bits[[space.block_gene(b, f) for b in range(space.n_blocks) for f in BIT_FIELDS]] = True
    t = np.where(bits, t_bits, t_arch)
    centre = t * (card - 1)
    genes = np.rint(centre + rng.uniform(-jitter, jitter, space.n_genes))
    return np.clip(genes, 0, card - 1).astype(np.int64)


def candidate_genes(space: SearchSpace, cfg: CollectConfig, index: int) -> np.ndarray:
    """The index-th candidate of a dataset (a pure function of seed and index)."""
    if cfg.draw == "cost":
        return space.canonical(cost_stratified_genes(space, cfg.seed, index)[None])[0]
    genes = space.sample(1, np.random.default_rng([cfg.seed, index]))[0]
    if cfg.kind == "quant" and (index // GROUP) % 2 == 1:
        shared = space.sample(1, np.random.default_rng([cfg.seed, 1_000_003, index // GROUP]))[0]
        bit_cols = [space.block_gene(b, f) for b in range(space.n_blocks) for f in BIT_FIELDS]
        arch = np.setdiff1d(np.arange(space.n_genes), bit_cols)
        genes[arch] = shared[arch]
    return space.canonical(genes[None])[0]


def measure(supernet: Supernet, cand: Any, cfg: CollectConfig, seed: int, split: Any = None) -> float:
    """Measured accuracy of one candidate: fp (BN re-estimated) or quantized under its policy after the
    fixed quantization-aware fine-tune. The single definition behind datasets and verification."""
    data, space = supernet.data, supernet.space.name  # a supernet is measured on the data it was trained on
    split = split if split is not None else load_split(cfg.split, data, space).subset(cfg.eval_images)
    return accuracy(measured_network(supernet, cand, cfg, seed), split)


def measured_network(supernet: Supernet, cand: Any, cfg: CollectConfig, seed: int) -> nn.Module:
    """The network :func:`measure` measures (what ``apqopt export`` writes): the candidate's subnet with
    BN statistics re-estimated -- for ``quant``, quantized under its policy and fine-tuned first."""
    data, space = supernet.data, supernet.space.name
    sub = supernet.extract(cand)
    reestimate_bn(sub, bn_slice(cfg.bn_images, data, space))
    if cfg.kind == "fp":
        return sub
    train = load_split("train", data, space)
    q = quantize(sub, cand, bn_slice(cfg.finetune.calib_images, data, space))
    finetune(q, train.images, train.labels, cfg.finetune, seed=seed)
    reestimate_bn(q, bn_slice(cfg.bn_images, data, space))
    return q


def _records(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]], int]:
    """(header, records, byte length of the intact part) of a dataset file.

    Strict, because a resume appends to and may cut the file: every complete line must be a record
    (a corrupt line in the middle is an error naming its line, never the end of the data), the first
    must be an apqopt dataset header, and only a torn *last* line (no newline: a kill mid-write) is
    left out of the intact part."""
    if not path.exists():
        return None, [], 0
    if path.is_dir():
        raise DatasetFileError(f"{path}: is a folder, not a dataset file")
    raw = path.read_bytes()
    *lines, torn = raw.split(b"\n")
    header: dict[str, Any] | None = None
    recs: list[dict[str, Any]] = []
    seen: dict[int, int] = {}  # index -> line
    space: SearchSpace | None = None
    good = 0
    for no, line in enumerate(lines, 1):
        good += len(line) + 1
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            obj = None
        if header is None:
            if not (isinstance(obj, dict) and obj.get("type") == "header" and isinstance(obj.get("config"), dict)):
                raise DatasetFileError(f"{path}:{no}: not an apqopt dataset (its first line is no dataset header)")
            header = obj
            continue
        if not (isinstance(obj, dict) and isinstance(obj.get("index"), int) and "accuracy" in obj and "genes" in obj):
            raise DatasetFileError(
                f"{path}:{no}: corrupt record (not a JSON object with index, genes and accuracy); "
                "repair or remove that line -- nothing was changed"
            )
        if space is None:
            space = _header_space(header, path)
        problem = _record_problem(obj, space)
        if problem is None and obj["index"] in seen:
            problem = f"index {obj['index']} again (first on line {seen[obj['index']]})"
        if problem:
            raise DatasetFileError(f"{path}:{no}: {problem}; repair or remove that line -- nothing was changed")
        seen[obj["index"]] = no
        recs.append(obj)
    if header is None and torn[: len(_HEADER_START)] != _HEADER_START[: len(torn)]:
        raise DatasetFileError(f"{path}:1: not an apqopt dataset (its first line is no dataset header)")
    return header, recs, good


def _header_space(header: dict[str, Any], path: Path) -> SearchSpace:
    """The space a dataset's records are genes of (a user's own space travels in the header)."""
    adopt(header, str(path))
    name = header["config"].get("space")
    if not isinstance(name, str):
        raise DatasetFileError(f"{path}:1: the header names no space")
    return get_space(name)


def _record_problem(rec: dict[str, Any], space: SearchSpace) -> str | None:
    """What is wrong with one record, in words, or None: an index below 0, genes that are not the
    space's (count, whole numbers, in range), an accuracy or stderr outside 0..1 (NaN included), a
    negative time. A predictor trained on such a record learns nonsense without a word."""
    if isinstance(rec["index"], bool) or rec["index"] < 0:
        return f"index {rec['index']!r} is not a whole number >= 0"
    genes = rec["genes"]
    if not isinstance(genes, list) or len(genes) != space.n_genes:
        got = f"{len(genes)} genes" if isinstance(genes, list) else type(genes).__name__
        return f"genes must be a list of {space.n_genes} (space '{space.name}'), got {got}"
    if not all(isinstance(g, int) and not isinstance(g, bool) for g in genes):
        return "genes must be whole numbers"
    try:
        space.validate_matrix(np.array(genes, dtype=np.int64)[None])
    except (ApqoptError, OverflowError) as exc:
        return str(exc).replace("row 0, ", "")
    for key, hi in (("accuracy", 1.0), ("stderr", 1.0), ("seconds", float("inf"))):
        v = rec.get(key, 0.0)
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= hi:  # NaN fails it too
            return f"{key} {v!r} is not a number in 0..{hi:g}"
    return None


def resumed_records(path: Path, config: dict[str, Any], other: str) -> tuple[bool, list[dict[str, Any]], int]:
    """(whether the file has its header, its records, the byte length of its intact part) of a dataset
    file a run is about to append to; one written with another ``config`` is refused (``other`` says how,
    after the file's name)."""
    stored, recs, good = _records(path)
    if stored is not None and stored["config"] != config:
        raise DatasetFileError(f"{path} {other}. stored: {json.dumps(stored['config'])}")
    return stored is not None, recs, good


def cut_torn_line(path: Path, good: int) -> None:
    """Drop a torn last line (a kill mid-write): the only thing a resume may cut."""
    if path.exists() and good < path.stat().st_size:
        with path.open("r+b") as fh:
            fh.truncate(good)


def append_record(fh: Any, record: dict[str, Any]) -> None:
    """One JSON line, on disk before the next is measured (a kill loses at most the one in hand)."""
    fh.write(json.dumps(record) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def shard_path(path: Path, shard: tuple[int, int]) -> Path:
    k, n = shard
    return path if n == 1 else path.with_name(f"{path.stem}.shard{k}of{n}{path.suffix}")


def _dataset_files(path: Path) -> list[Path]:
    """The file itself (if present) and its shard files, whatever split wrote them."""
    files = sorted(path.parent.glob(f"{path.stem}.shard*of*{path.suffix}"))
    return [path, *files] if path.exists() else files


def _load_files(path: Path) -> tuple[dict[str, Any], list[list[dict[str, Any]]]]:
    """Header and each file's records (the file itself and its shards), checked to share settings;
    kept per file because a sharded dataset's wall time is its slowest file's."""
    files = _dataset_files(path)
    if not files:
        raise DatasetFileError(f"no dataset at {path} (nor shard files beside it)")
    header, per_file = None, []
    for f in files:
        h, rs, _ = _records(f)
        if h is None:
            if f.stat().st_size:
                raise DatasetFileError(f"{f}: not an apqopt dataset (its first line is no JSON header)")
            continue
        if header is not None and h["config"] != header["config"]:
            raise DatasetFileError(f"{f}: written with other settings than {files[0]}")
        header = h
        per_file.append(rs)
    if header is None:
        raise DatasetFileError(f"{path}: empty dataset")
    return header, per_file


def _merge(per_file: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Records of all files, ordered by index, the first copy of an index kept."""
    recs: dict[int, dict[str, Any]] = {}
    for rs in per_file:
        for r in rs:
            recs.setdefault(r["index"], r)
    return [recs[i] for i in sorted(recs)]


def load_dataset(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Header and records of a dataset file, with its shard files merged and ordered by index."""
    header, per_file = _load_files(Path(path))
    return header, _merge(per_file)


def _indices_elsewhere(out: Path, own: Path, config: dict[str, Any]) -> set[int]:
    """Indices recorded by the dataset's other files (shards of any split) with the same settings."""
    done: set[int] = set()
    for f in _dataset_files(out):
        if f == own:
            continue
        h, rs, _ = _records(f)
        if h is not None and h["config"] != config:
            raise DatasetFileError(f"{f} belongs to this dataset but was collected with other settings")
        done.update(r["index"] for r in rs)
    return done


def _indices(n: int, shard: tuple[int, int]) -> Iterator[int]:
    k, m = shard
    return (i for i in range(n) if i % m == k)


def collect(
    cfg: CollectConfig,
    supernet: Supernet,
    out: str | os.PathLike[str],
    n: int,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
) -> Path:
    """Measure candidates 0..n-1 (this shard's share) and append them to ``out``; resumable."""
    k, m = shard
    if not (m >= 1 and 0 <= k < m):
        raise ConfigError(f"shard must be k/n with 0 <= k < n, got {k}/{m}")
    path = shard_path(Path(out), shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    want = {"type": "header", "kind": cfg.kind, "config": cfg.to_dict(), **carried(get_space(cfg.space))}
    headed, recs, good = resumed_records(path, want["config"], "was collected with other settings; use another file")
    space = get_space(cfg.space)
    done = {r["index"] for r in recs} | _indices_elsewhere(Path(out), path, want["config"])
    cut_torn_line(path, good)
    mine = list(_indices(n, shard))
    todo = [i for i in mine if i not in done]
    split = load_split(cfg.split, supernet.data, space.name).subset(cfg.eval_images)
    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc=f"collect {cfg.kind}", disable=not progress)
    with path.open("a") as fh:
        if not headed:
            append_record(fh, want)
        for i in todo:
            t0 = time.time()
            genes = candidate_genes(space, cfg, i)
            cand = space.to_candidates(genes[None])[0]
            rec: dict[str, Any] = {"index": i, "genes": genes.tolist()}
            acc = measure(supernet, cand, cfg, seed=cfg.seed * 1_000_003 + i, split=split)
            rec.update(
                accuracy=acc,
                stderr=accuracy_stderr(acc, len(split)),
                macs=space.macs(cand),
                seconds=round(time.time() - t0, 2),
            )
            if cfg.kind == "quant":
                rec["quantizer"] = QUANTIZER  # provenance: records without it used the plain-ops quantizer
            append_record(fh, rec)
            bar.update(1)
            bar.set_postfix(acc=f"{acc:.4f}")
    bar.close()
    return path


def dataset_arrays(path: str | os.PathLike[str]) -> tuple[SearchSpace, np.ndarray, np.ndarray]:
    """(space, gene matrix, accuracies) of a dataset, shards merged."""
    header, recs = load_dataset(path)
    adopt(header, str(path))
    space = get_space(header["config"]["space"])
    genes = np.array([r["genes"] for r in recs], dtype=np.int64).reshape(-1, space.n_genes)
    return space, genes, np.array([r["accuracy"] for r in recs], dtype=np.float64)


def summarize(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a dataset holds so far (shards merged): the figures the README's dataset table reports,
    recomputed from the files so they can be checked at any point of a long collection."""
    from scipy.stats import spearmanr

    header, per_file = _load_files(Path(path))
    recs = _merge(per_file)
    if not recs:
        raise DatasetFileError(f"{path}: no records yet (a header only)")
    acc = 100 * np.array([r["accuracy"] for r in recs])
    secs = np.array([r["seconds"] for r in recs])
    out: dict[str, Any] = {
        "dataset": str(path),
        "kind": header["kind"],
        "seed": header["config"]["seed"],
        "records": len(recs),
        "accuracy_min_median_max": [round(float(v), 2) for v in np.percentile(acc, [0, 50, 100])],
        "spearman_macs_accuracy": round(float(spearmanr([r["macs"] for r in recs], acc)[0]), 3)
        if len(recs) > 2
        else float("nan"),
        # records time themselves by the wall clock (pauses included), so this sum can exceed CPU time
        "seconds_total": round(float(secs.sum()), 1),
        "median_s_per_record": round(float(np.median(secs)), 1),
        # shards run side by side, so the dataset's wall time is its slowest shard's sum
        "slowest_shard_s": round(max(sum(r["seconds"] for r in rs) for rs in per_file), 1),
    }
    if header["kind"] == "quant":
        by_quantizer: dict[str, list[float]] = {}
        for r in recs:
            by_quantizer.setdefault(r.get("quantizer", "plain"), []).append(r["seconds"])
        out["median_s_by_quantizer"] = {k: round(float(np.median(v)), 1) for k, v in sorted(by_quantizer.items())}
    return out


__all__ = ["CollectConfig", "DatasetFileError", "collect", "dataset_arrays", "load_dataset", "summarize"]
