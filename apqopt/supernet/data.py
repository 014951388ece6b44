"""Fashion-MNIST from its idx .gz files, offline.

Why our own reader: torchvision's checksums reject Debian's recompressed files, and nothing may be
downloaded at run time. Debian's `dataset-fashion-mnist` installs the four files under
/usr/share/datasets/fashion-mnist/; `APQOPT_FMNIST_DIR` (or a path argument) points elsewhere.

Splits: the 60k training images are split once, by a fixed permutation, into 50k for training the
supernet and 10k ``val`` images on which subnet accuracies for the predictor are measured; the 10k
``test`` images are kept for final reports. Nothing here is random at run time.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from apqopt.errors import ApqoptError, ConfigError

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
INSTALL_HINT = "apt-get install -y dataset-fashion-mnist"
MEAN, STD = 0.2860, 0.3530
VAL_SIZE = 10_000
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class DatasetError(ApqoptError, RuntimeError):
    """The dataset is missing or its files are damaged."""


def data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    return Path(path or os.environ.get("APQOPT_FMNIST_DIR") or DEFAULT_DIR)


def _read_idx(path: Path, magic: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise DatasetError(
            f"Fashion-MNIST file {path} not found. Install it with `{INSTALL_HINT}` "
            f"or set APQOPT_FMNIST_DIR to a folder holding the four idx .gz files"
        ) from None
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path} is not a readable gzip file (corrupted download?): {exc}") from exc
    got, n = struct.unpack(">II", raw[:8])
    if got != magic:
        raise DatasetError(f"{path}: bad idx magic number {got:#x}, expected {magic:#x}")
    if magic == 0x803:
        rows, cols = struct.unpack(">II", raw[8:16])
        data = np.frombuffer(raw, dtype=np.uint8, offset=16)
        shape: tuple[int, ...] = (n, rows, cols)
    else:
        data = np.frombuffer(raw, dtype=np.uint8, offset=8)
        shape = (n,)
    if data.size != int(np.prod(shape)):
        raise DatasetError(f"{path}: expected {np.prod(shape)} values, found {data.size} (truncated file?)")
    return data.reshape(shape)


@dataclass(frozen=True)
class Split:
    """Images as normalised float tensors (N, 1, 28, 28) and labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.numel())

    def subset(self, n: int) -> Split:
        return Split(self.images[:n], self.labels[:n])


SPLIT_SIZES = {"train": 50_000, "val": VAL_SIZE, "test": 10_000}


def split_size(name: str) -> int:
    """Images in a split, known without reading the files (settings are checked before any work)."""
    if name not in SPLIT_SIZES:
        raise ConfigError(f"unknown split '{name}'; use train, val or test")
    return SPLIT_SIZES[name]


@lru_cache(maxsize=4)
def load_split(name: str, path: str | None = None) -> Split:
    """``train`` (50k), ``val`` (10k held out of the training files) or ``test`` (10k)."""
    if name not in ("train", "val", "test"):
        raise ConfigError(f"unknown split '{name}'; use train, val or test")
    folder = data_dir(path)
    img_file, lbl_file = FILES["test" if name == "test" else "train"]
    images = _read_idx(folder / img_file, 0x803)
    labels = _read_idx(folder / lbl_file, 0x801)
    if len(images) != len(labels):
        raise DatasetError(f"{folder}: {len(images)} images but {len(labels)} labels")
    if name != "test":
        order = np.random.default_rng(20200614).permutation(len(images))
        idx = order[VAL_SIZE:] if name == "train" else order[:VAL_SIZE]
        images, labels = images[idx], labels[idx]
    x = torch.from_numpy(images.astype(np.float32) / 255.0).sub_(MEAN).div_(STD).unsqueeze(1)
    return Split(x.contiguous(memory_format=torch.channels_last), torch.from_numpy(labels.astype(np.int64)))


def accuracy_stderr(acc: float, n: int) -> float:
    """Binomial standard error of an accuracy measured on n images."""
    return float(np.sqrt(max(acc * (1 - acc), 1e-12) / n))
