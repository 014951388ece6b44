"""Fashion-MNIST loader: real files, fixed splits, clear errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from apqopt.errors import ApqoptError
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


# ---------------------------------------------------------------------- other data sources
def _folder(root: Path, classes: dict[str, list[tuple[int, int, int]]], split: str = "train", size: int = 8) -> None:
    from PIL import Image

    for cls, colours in classes.items():
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        for i, c in enumerate(colours):
            Image.new("RGB", (size, size), c).save(root / split / cls / f"{i}.png")


def _space(tmp_path: Path, channels: int = 3, size: int = 16, classes: int = 10) -> str:
    import json

    from apqopt.space import get_space, space_to_dict

    d = space_to_dict(get_space("fmnist"))
    d |= {
        "name": f"s{channels}x{size}x{classes}",
        "input_size": size,
        "image_channels": channels,
        "num_classes": classes,
    }
    d["head"][0] |= {"c_in": channels, "h_in": size}
    d["tail"][-1]["c_out"] = classes
    (tmp_path / "s.json").write_text(json.dumps(d))
    return str(tmp_path / "s.json")


def test_image_folder_is_resized_converted_and_normalised_with_train_statistics(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _folder(root, {"b_red": [(255, 0, 0), (200, 0, 0)], "a_blue": [(0, 0, 255)]})
    _folder(root, {"b_red": [(255, 0, 0)], "a_blue": [(0, 0, 250)]}, "val", size=20)
    src = f"imagefolder:{root}"
    train, val = load_split("train", src, _space(tmp_path)), load_split("val", src, _space(tmp_path))
    assert train.images.shape == (3, 3, 16, 16) and val.images.shape == (2, 3, 16, 16)
    assert train.labels.tolist() == [0, 1, 1] and val.labels.tolist() == [0, 1]  # classes sorted: a_blue = 0
    per_channel = train.images.permute(1, 0, 2, 3).reshape(3, -1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(3), atol=1e-5)  # the train split's own statistics
    assert float(val.images[1, 0].mean()) > float(val.images[0, 0].mean())  # red is red in val too
    grey = load_split("train", src, _space(tmp_path, channels=1))
    assert grey.images.shape == (3, 1, 16, 16)


def test_image_folder_errors_name_the_folder_or_file(tmp_path: Path) -> None:
    from apqopt.errors import ApqoptError

    root = tmp_path / "imgs"
    sp = _space(tmp_path)
    with pytest.raises(ApqoptError, match=r"no folder .*train"):
        load_split("train", f"imagefolder:{root}", sp)
    _folder(root, {"a": [(1, 2, 3)], "b": [(3, 2, 1)]})
    _folder(root, {"c": [(1, 1, 1)]}, "val")
    with pytest.raises(ApqoptError, match="val/c: class folder not in"):
        load_split("val", f"imagefolder:{root}", sp)
    (root / "train" / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ApqoptError, match=r"broken\.png: not a readable image"):
        load_split("train", f"imagefolder:{root}", _space(tmp_path, size=12))
    with pytest.raises(ApqoptError, match=r"labels go up to 1, space .* has 1 classes"):
        (root / "train" / "a" / "broken.png").unlink()
        load_split("train", f"imagefolder:{root}", _space(tmp_path, classes=1))
    with pytest.raises(ApqoptError, match="fmnist images are 28x28 grey"):
        load_split("train", "fmnist", sp)
    with pytest.raises(ApqoptError, match="data must be"):
        load_split("train", "images", sp)


def _source() -> tuple[tuple[torch.Tensor, torch.Tensor], list[tuple[torch.Tensor, int]]]:
    g = torch.Generator().manual_seed(0)
    train = (torch.randn(6, 3, 16, 16, generator=g), torch.tensor([0, 1, 2, 0, 1, 2]))
    return train, [(torch.randn(3, 16, 16, generator=g), i % 3) for i in range(4)]


def _bad_source() -> tuple[torch.Tensor, ...]:
    return (torch.zeros(2, 3, 8, 8), torch.zeros(2))


def test_a_function_is_a_data_source(tmp_path: Path) -> None:
    from apqopt.errors import ApqoptError

    sp = _space(tmp_path)
    train = load_split("train", "tests.test_data:_source", sp)
    val = load_split("val", "tests.test_data:_source", sp)
    assert train.images.shape == (6, 3, 16, 16) and train.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert val.images.shape == (4, 3, 16, 16) and val.labels.tolist() == [0, 1, 2, 0]
    with pytest.raises(ApqoptError, match="returns no test split"):
        load_split("test", "tests.test_data:_source", sp)
    with pytest.raises(ApqoptError, match="cannot import nothing"):
        load_split("train", "tests.test_data:nothing", sp)
    with pytest.raises(ApqoptError, match="must be a Dataset"):
        load_split("train", "tests.test_data:_bad_source", sp)


def test_data_option_is_checked_at_the_boundary(tmp_path: Path) -> None:
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "apqopt", "supernet", "train", "--data", f"imagefolder:{tmp_path}", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "--data" in res.stderr and "train" in res.stderr


def test_a_weights_file_never_names_code_to_run(tmp_path: Path) -> None:
    """A supernet file whose recorded data source is `module:function` is refused when no --data is given:
    exit 2, one line that says to pass --data, and the module (beside the command, so importable) never
    runs. Given on the command line, the same source is the user's choice and is used."""
    import subprocess
    import sys

    from apqopt.shipped import supernet_path

    payload = torch.load(supernet_path("fmnist"), weights_only=True)
    payload["config"]["data"] = "markermod:run"
    torch.save(payload, tmp_path / "evil.pt")
    (tmp_path / "markermod.py").write_text(
        "from pathlib import Path\n\ndef run():\n    Path('RAN').write_text('x')\n    raise SystemExit(0)\n"
    )
    cmd = [sys.executable, "-m", "apqopt", "supernet", "eval", "smallest", "--supernet", "evil.pt", "--split", "val"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "markermod:run" in res.stderr and "--data" in res.stderr and "never imports" in res.stderr
    assert not (tmp_path / "RAN").exists()
    from apqopt.supernet.train import load_supernet

    with pytest.raises(ApqoptError, match="never imports"):
        load_supernet(tmp_path / "evil.pt")
    assert load_supernet(tmp_path / "evil.pt", data="fmnist").data == "fmnist"  # the user's word decides
