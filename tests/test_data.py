"""Fashion-MNIST loader: real files, fixed splits, clear errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from apqopt.supernet.data import DatasetError, accuracy_stderr, data_dir, load_split


def test_splits(fmnist_available: None) -> None:
    train, val, test = load_split("train"), load_split("val"), load_split("test")
    assert (len(train), len(val), len(test)) == (50_000, 10_000, 10_000)
    assert train.images.shape[1:] == (1, 28, 28) and train.images.is_contiguous(memory_format=torch.channels_last)
    assert set(test.labels.unique().tolist()) == set(range(10))
    # val is held out of the training files: no image appears in both
    a = {hash(x.numpy().tobytes()) for x in train.images[:5000]}
    assert not any(hash(x.numpy().tobytes()) in a for x in val.images[:2000])
    assert abs(float(train.images.mean())) < 0.05 and abs(float(train.images.std()) - 1) < 0.05


def test_missing_and_corrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmnist_available: None) -> None:
    load_split.cache_clear()
    monkeypatch.setenv("APQOPT_FMNIST_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match="apt-get install -y dataset-fashion-mnist"):
        load_split("test")
    src = data_dir(None)
    assert src == tmp_path
    real = Path("/usr/share/datasets/fashion-mnist")
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes((real / "t10k-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(DatasetError, match="not a readable gzip"):
        load_split("test")
    raw = gzip.decompress((real / "t10k-images-idx3-ubyte.gz").read_bytes())
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(DatasetError, match="truncated"):
        load_split("test")
    load_split.cache_clear()
    with pytest.raises(ValueError, match="unknown split"):
        load_split("dev")


def test_stderr() -> None:
    assert accuracy_stderr(0.9, 10_000) == pytest.approx(0.003)
