"""The images a supernet is trained and measured on: Fashion-MNIST (the default), a folder of images, or
a user's own function -- named by one ``--data`` string.

* ``fmnist`` -- Fashion-MNIST from its idx .gz files, offline. Why our own reader: torchvision's
  checksums reject Debian's recompressed files, and nothing may be downloaded at run time. Debian's
  `dataset-fashion-mnist` installs the four files under /usr/share/datasets/fashion-mnist/;
  `APQOPT_FMNIST_DIR` points elsewhere. The 60k training images are split once, by a fixed
  permutation, into 50k for training the supernet and 10k ``val`` images on which subnet accuracies
  are measured; the 10k ``test`` images are kept for final reports.
* ``imagefolder:DIR`` -- torchvision's layout: ``DIR/train/CLASS/*.png`` and ``DIR/val/CLASS/...``
  (``DIR/test`` optional); classes are the sorted sub-folders of ``train``. Images are converted to the
  space's channels (grey or RGB), resized to its input size, and normalised per channel with the
  training split's mean and standard deviation.
* ``module:function`` -- ``function()`` returns ``(train, val)`` or ``(train, val, test)``, each a
  ``torch.utils.data.Dataset`` of ``(image, label)`` pairs or a pair of tensors ``(images, labels)``;
  images are float tensors of the space's shape ``(C, H, W)``, already normalised.

Every split is held in memory as one tensor (N x C x H x W float32: 50k images of 32x32 RGB take 600 MB),
which is what lets a 2-core machine train a supernet at all; nothing here is random at run time.
"""

from __future__ import annotations

import gzip
import importlib
import os
import struct
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from apqopt.errors import ApqoptError, ConfigError, first_line

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
INSTALL_HINT = "apt-get install -y dataset-fashion-mnist"
MEAN, STD = 0.2860, 0.3530
VAL_SIZE = 10_000
# what one file of an image folder may be: a 40-megapixel photo fits; a PNG that inflates to gigabytes
# (a decompression bomb) or a file of hundreds of megabytes does not
MAX_IMAGE_PIXELS = 40_000_000
MAX_IMAGE_BYTES = 64 * 2**20
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class DatasetError(ApqoptError, RuntimeError):
    """The dataset is missing or its files are damaged."""


def data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """Where the Fashion-MNIST files are."""
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
    """Images as normalised float tensors (N, C, H, W) and labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.numel())

    def subset(self, n: int) -> Split:
        """The first n images; asking for more than the split holds is an error, not a silent shortfall."""
        if n > len(self):
            raise ConfigError(f"asked for {n} images of a split that holds {len(self)}")
        return Split(self.images[:n], self.labels[:n])


SPLIT_SIZES = {"train": 50_000, "val": VAL_SIZE, "test": 10_000}


def split_size(name: str) -> int:
    """Images in a split, known without reading the files (settings are checked before any work)."""
    if name not in SPLIT_SIZES:
        raise ConfigError(f"unknown split '{name}'; use train, val or test")
    return SPLIT_SIZES[name]


DATA_KINDS = "fmnist | imagefolder:DIR | module:function"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def check_data(text: str) -> str:
    """A ``--data`` value: its form is checked here (folders and modules are read when first used)."""
    if text == "fmnist":
        return text
    kind, _, arg = text.partition(":")
    if not arg or (kind != "imagefolder" and not kind.replace(".", "").replace("_", "").isalnum()):
        raise ConfigError(f"data must be {DATA_KINDS}, got {text!r}")
    if kind == "imagefolder" and not (Path(arg) / "train").is_dir():
        raise ConfigError(f"{text}: no folder {Path(arg) / 'train'} (an image folder holds train/ and val/)")
    return text


def is_file_safe_data(text: str) -> bool:
    """Whether a data source read from a *file* may be used as it stands: ``fmnist`` or an image folder.
    A ``module:function`` source runs code when it is loaded, so it is taken only from the user, each time
    (a weights file naming ``os:abort`` or a module beside it must not run anything)."""
    return text == "fmnist" or text.startswith("imagefolder:")


def load_split(name: str, data: str = "fmnist", space: str = "fmnist") -> Split:
    """``train``, ``val`` or ``test`` of a data source, shaped for ``space`` (its channels and size)."""
    from apqopt.space import get_space

    if name not in ("train", "val", "test"):
        raise ConfigError(f"unknown split '{name}'; use train, val or test")
    sp = get_space(space)
    return _load(name, check_data(data), sp.name, sp.image_channels, sp.input_size, sp.num_classes)


@lru_cache(maxsize=6)
def _load(name: str, data: str, space: str, channels: int, size: int, classes: int) -> Split:
    if data == "fmnist":
        if (channels, size) != (1, 28):
            raise ConfigError(f"fmnist images are 28x28 grey; space '{space}' wants {size}x{size}x{channels}")
        split = _fmnist(name)
    elif data.startswith("imagefolder:"):
        split = _image_folder(Path(data.partition(":")[2]), name, channels, size)
    else:
        split = _from_function(data, name, channels, size)
    if len(split) and int(split.labels.max()) >= classes:
        raise ConfigError(f"{data}: labels go up to {int(split.labels.max())}, space '{space}' has {classes} classes")
    if len(split) and int(split.labels.min()) < 0:
        raise ConfigError(f"{data}: the {name} split has label {int(split.labels.min())}; labels are 0..{classes - 1}")
    return split


load_split.cache_clear = _load.cache_clear  # type: ignore[attr-defined]  # e.g. after APQOPT_FMNIST_DIR changes


FMNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def preprocessing(data: str, space: str) -> dict[str, Any]:
    """How an image must be prepared for a network trained on ``data`` -- what an exported file carries so
    a deployment feeds it what it was measured on: input shape, resize, pixel scale, per-channel mean and
    std, and the class names (label i is ``classes[i]``)."""
    from apqopt.space import get_space

    sp = get_space(space)
    shape = [sp.image_channels, sp.input_size, sp.input_size]
    colour = "grey (L)" if sp.image_channels == 1 else "RGB"
    if data == "fmnist":
        mean, std, classes = [MEAN], [STD], list(FMNIST_CLASSES)
    elif data.startswith("imagefolder:"):
        root = Path(data.partition(":")[2])
        folders = tuple(sorted(p.name for p in (root / "train").iterdir() if p.is_dir()))
        m, sd = _folder_stats(root, folders, sp.image_channels, sp.input_size)
        mean, std, classes = [float(v) for v in m], [float(v) for v in sd], list(folders)
    else:  # a module:function source returns tensors already prepared by the user's own code
        return {
            "input_shape": shape,
            "input": f"tensors as {data} returns them (its own preparation; apqopt applies none)",
            "classes": [str(i) for i in range(sp.num_classes)],
        }
    return {
        "input_shape": shape,
        "input": f"{colour} {sp.input_size}x{sp.input_size} (bilinear resize), pixels / 255, then (x - mean) / std "
        "per channel, NCHW float32",
        "mean": mean,
        "std": std,
        "classes": classes,
    }


def _fmnist(name: str) -> Split:
    folder = data_dir()
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


def _image_folder(root: Path, name: str, channels: int, size: int) -> Split:
    """Images of ``root/name/CLASS/``, normalised with the ``train`` split's per-channel statistics."""
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir()) if (root / "train").is_dir() else []
    if not classes:
        raise DatasetError(f"{root / 'train'}: no class folders (imagefolder:DIR needs DIR/train/CLASS/...)")
    raw = _read_folder(root, name, tuple(classes), channels, size)
    mean, std = _folder_stats(root, tuple(classes), channels, size)
    x = (raw[0] - mean[:, None, None]) / std[:, None, None]
    return Split(x.contiguous(memory_format=torch.channels_last), raw[1])


@lru_cache(maxsize=8)
def _read_folder(
    root: Path, name: str, classes: tuple[str, ...], channels: int, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image, UnidentifiedImageError

    folder = root / name
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not found (imagefolder:DIR needs DIR/{name}/CLASS/...)")
    extra = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in classes)
    if extra:
        raise DatasetError(f"{folder / extra[0]}: class folder not in {root / 'train'}")
    images, labels = [], []
    for label, cls in enumerate(classes):
        files = (
            sorted(p for p in (folder / cls).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if (folder / cls).is_dir()
            else []
        )
        for f in files:
            if not f.is_file():  # a FIFO or device named *.png would block or read for ever
                raise DatasetError(f"{f}: not a regular file")
            if (nbytes := f.stat().st_size) > MAX_IMAGE_BYTES:
                raise DatasetError(f"{f}: {nbytes:,} bytes, more than an image here may hold ({MAX_IMAGE_BYTES:,})")
            try:
                with warnings.catch_warnings():  # restored on exit: the user's filters stay theirs
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    with Image.open(f) as im:
                        if im.width * im.height > MAX_IMAGE_PIXELS:
                            raise DatasetError(
                                f"{f}: {im.width}x{im.height} pixels, more than an image here may have "
                                f"({MAX_IMAGE_PIXELS:,}); a decompression bomb?"
                            )
                        im = im.convert("L" if channels == 1 else "RGB")
                        if im.size != (size, size):
                            im = im.resize((size, size), Image.Resampling.BILINEAR)
                        arr = np.asarray(im, dtype=np.float32) / 255.0
            except (
                UnidentifiedImageError,
                OSError,
                Image.DecompressionBombError,
                Image.DecompressionBombWarning,
            ) as exc:
                raise DatasetError(f"{f}: not a readable image ({first_line(exc)})") from None
            images.append(arr[None] if channels == 1 else arr.transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise DatasetError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64)


@lru_cache(maxsize=4)
def _folder_stats(root: Path, classes: tuple[str, ...], channels: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = _read_folder(root, "train", classes, channels, size)[0]
    return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3)).clamp_min(1e-6)


def _from_function(data: str, name: str, channels: int, size: int) -> Split:
    module, _, func = data.partition(":")
    try:
        fn = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"data {data}: cannot import {func} from {module} ({exc})") from None
    if not callable(fn):
        raise ConfigError(f"data {data}: {func} is a {type(fn).__name__}, not a function returning the splits")
    try:
        parts = fn()
    except Exception as exc:  # the user's own code: whatever it raises is their data's error, in one line
        raise ConfigError(f"data {data}: {func}() raised {type(exc).__name__}: {first_line(exc)}") from None
    if not isinstance(parts, list | tuple) or len(parts) not in (2, 3):
        raise ConfigError(f"data {data}: must return (train, val) or (train, val, test), got {type(parts).__name__}")
    index = ("train", "val", "test").index(name)
    if index >= len(parts):
        raise ConfigError(f"data {data}: returns no test split")
    part = parts[index]
    if isinstance(part, tuple) and len(part) == 2 and all(isinstance(t, torch.Tensor) for t in part):
        images, labels = part
    else:
        try:
            items = [part[i] for i in range(len(part))]
            images = torch.stack([torch.as_tensor(im, dtype=torch.float32) for im, _ in items])
            labels = torch.tensor([int(lbl) for _, lbl in items], dtype=torch.int64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"data {data}: the {name} split must be a Dataset of (image, label) pairs or (images, labels) "
                f"tensors ({first_line(exc)})"
            ) from None
    if tuple(images.shape[1:]) != (channels, size, size):
        raise ConfigError(
            f"data {data}: {name} images have shape {tuple(images.shape[1:])}, the space wants {(channels, size, size)}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise ConfigError(
            f"data {data}: the {name} split has {len(images)} images but labels of shape {tuple(labels.shape)}"
        )
    if not len(labels):
        raise ConfigError(f"data {data}: the {name} split is empty")
    if labels.is_floating_point() and not torch.equal(labels, labels.round()):
        raise ConfigError(f"data {data}: the {name} split's labels are not whole numbers")
    images = images.float()
    if not torch.isfinite(images).all():
        raise ConfigError(f"data {data}: the {name} split's images hold non-finite values (NaN or infinity)")
    return Split(images.contiguous(memory_format=torch.channels_last), labels.long())


def accuracy_stderr(acc: float, n: int) -> float:
    """Binomial standard error of an accuracy measured on n images."""
    return float(np.sqrt(max(acc * (1 - acc), 1e-12) / n))
