"""APQ's ImageNet supernet (#21.5): both published checkpoint layouts load into apqopt's supernet, and a
subnet computes what the layout's semantics (DESIGN.md) say, checked against an independent forward
written from that description on the raw checkpoint."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from apqopt.cli import main
from apqopt.errors import ConfigError
from apqopt.interop.apq import from_apq_spec
from apqopt.supernet.ofa import canonical, layout, load_ofa_supernet
from apqopt.supernet.quant import quantize
from apqopt.supernet.train import load_supernet

LAYOUTS = ("ofa_mbv2_supernet_layout.csv", "apq_quant_supernet_layout.csv")
BITS = ("pw_w_bits_setting", "pw_a_bits_setting", "dw_w_bits_setting", "dw_a_bits_setting")


def _rows(reference_dir: Path, name: str) -> list[tuple[str, tuple[int, ...]]]:
    with open(reference_dir / name) as fh:
        rows = list(csv.DictReader(fh))
    return [(r["key"], () if r["shape"] == "scalar" else tuple(map(int, r["shape"].split("x")))) for r in rows]


def _state(rows: list[tuple[str, tuple[int, ...]]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values of a trained network's scale for every key of a layout."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in rows:
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(7)
        elif key.endswith(("running_var", "bn.weight")):
            sd[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("_matrix"):
            sd[key] = torch.eye(shape[0]) + 0.1 * torch.randn(shape, generator=g)
        elif key.endswith("_range"):
            sd[key] = torch.rand(shape, generator=g) + 1
        else:
            fan = int(np.prod(shape[1:])) if len(shape) > 1 else 10
            sd[key] = torch.randn(shape, generator=g) / fan**0.5
    return sd


def _make_divisible(v: float, d: int = 8) -> int:
    new = max(d, int(v + d / 2) // d * d)
    return new + d if new < 0.9 * v else new


def _reference(sd: dict[str, torch.Tensor], spec: dict, x: torch.Tensor) -> torch.Tensor:
    """A subnet's forward as DESIGN.md describes it, straight from the raw checkpoint (its own spellings)."""

    def bn(h: torch.Tensor, p: str) -> torch.Tensor:
        n = h.shape[1]
        args = [sd[f"{p}.{k}"][:n] for k in ("running_mean", "running_var", "weight", "bias")]
        return F.batch_norm(h, *args, False, 0.1, 1e-3)

    h = F.relu6(bn(F.conv2d(x, sd["first_conv.conv.weight"], stride=2, padding=1), "first_conv.bn"))
    p = "blocks.0.mobile_inverted_conv."
    h = F.relu6(bn(F.conv2d(h, sd[p + "depth_conv.conv.weight"], padding=1, groups=32), p + "depth_conv.bn"))
    h = bn(F.conv2d(h, sd[p + "point_linear.conv.weight"]), p + "point_linear.bn")
    i, c_in = 0, 16
    for s, (width, stride, n) in enumerate(zip([24, 40, 80, 96, 192, 320], [2, 2, 2, 1, 2, 1], [4, 4, 4, 4, 4, 1])):
        for j in range(min(n, spec["d"][s])):
            p, k = f"blocks.{i + j + 1}.mobile_inverted_conv.", spec["ks"][i + j]
            m = _make_divisible(round(c_in * spec["e"][i + j]))
            st = stride if j == 0 else 1
            y = F.conv2d(h, sd[p + "inverted_bottleneck.conv.conv.weight"][:m])
            y = F.relu6(bn(y, p + "inverted_bottleneck.bn.bn"))
            w = sd[p + "depth_conv.conv.conv.weight"][:m]
            if k < 7:
                w = F.linear(w[:, :, 1:6, 1:6].reshape(m, 25), sd[p + "depth_conv.conv.7to5_matrix"]).reshape(
                    m, 1, 5, 5
                )
            if k < 5:
                w = F.linear(w[:, :, 1:4, 1:4].reshape(m, 9), sd[p + "depth_conv.conv.5to3_matrix"])
                w = w.reshape(m, 1, 3, 3)
            y = F.relu6(bn(F.conv2d(y, w, stride=st, padding=k // 2, groups=m), p + "depth_conv.bn.bn"))
            y = bn(F.conv2d(y, sd[p + "point_linear.conv.conv.weight"][:, :m]), p + "point_linear.bn.bn")
            h = h + y if st == 1 and c_in == width else y
            c_in = width
        i += n
    h = F.relu6(bn(F.conv2d(h, sd["feature_mix_layer.conv.weight"]), "feature_mix_layer.bn"))
    return F.linear(h.mean((2, 3)), sd["classifier.linear.weight"], sd["classifier.linear.bias"])


def _spec(rng: random.Random, bits: int = 8) -> dict:
    spec = {
        "ks": [rng.choice([3, 5, 7]) for _ in range(21)],
        "e": [rng.choice([4, 6]) for _ in range(21)],
        "d": [rng.choice([2, 3, 4]) for _ in range(5)] + [1],
    }
    return spec | {f: [bits] * 21 for f in BITS}


@pytest.mark.parametrize("name", LAYOUTS)
def test_the_expected_layout_is_the_published_one(reference_dir: Path, name: str) -> None:
    published = {canonical(k): s for k, s in _rows(reference_dir, name) if not k.endswith("_range")}
    assert {k: s for k, (_, s) in layout().items()} == published


@pytest.mark.parametrize("name", LAYOUTS)
def test_a_checkpoint_of_either_layout_loads(reference_dir: Path, name: str) -> None:
    sd = _state(_rows(reference_dir, name))
    net = load_ofa_supernet(sd)
    assert net.space.name == "apq-mbv2"
    assert len(net.apq_ranges_) == (68 if "quant" in name else 0)  # every conv and the classifier
    # both spellings of a wrapped layer, and a DataParallel prefix, read the same
    other = {"module." + canonical(k): v for k, v in sd.items()}
    x = torch.randn(1, 3, 128, 128)
    cand = net.space.uniform()
    with torch.no_grad():
        assert torch.equal(net(x, cand), load_ofa_supernet({"state_dict": other})(x, cand))


def test_subnets_compute_what_the_layout_describes(reference_dir: Path) -> None:
    sd = _state(_rows(reference_dir, LAYOUTS[0]), seed=1)
    net = load_ofa_supernet(sd)
    rng = random.Random(3)
    for _ in range(3):
        spec = _spec(rng)
        cand = from_apq_spec(net.space, spec)
        x = torch.randn(2, 3, 128, 128)
        sub = net.extract(cand).eval()
        with torch.no_grad():
            want = _reference(sd, spec, x)
            assert torch.allclose(sub(x), want, atol=1e-5, rtol=1e-4)
            assert torch.allclose(net(x, cand), want, atol=1e-5, rtol=1e-4)
    spec = _spec(rng, bits=4)  # and a quantized subnet runs (apqopt's quantizer; fixed layers at 8 bits)
    q = quantize(net.extract(from_apq_spec(net.space, spec)).eval(), from_apq_spec(net.space, spec), x)
    with torch.no_grad():
        assert q(x).shape == (2, 1000) and torch.isfinite(q(x)).all()


def test_kernel_transform_by_hand(reference_dir: Path) -> None:
    """Channel 0 of block 1's 7x7 weight holds 7*row + col; 7->5 doubles, 5->3 adds the last tap to the
    first (y = x M^T: M[0, 8] = 1 moves tap 8 into tap 0, not the other way round)."""
    sd = _state(_rows(reference_dir, LAYOUTS[0]))
    p = "blocks.1.mobile_inverted_conv.depth_conv.conv."
    sd[p + "conv.weight"][0, 0] = torch.arange(49.0).reshape(7, 7)
    sd[p + "7to5_matrix"] = 2 * torch.eye(25)
    m = torch.eye(9)
    m[0, 8] = 1
    sd[p + "5to3_matrix"] = m
    block = load_ofa_supernet(sd).blocks[0]
    five = [
        [16, 18, 20, 22, 24],
        [30, 32, 34, 36, 38],
        [44, 46, 48, 50, 52],
        [58, 60, 62, 64, 66],
        [72, 74, 76, 78, 80],
    ]
    three = [[32 + 64, 34, 36], [46, 48, 50], [60, 62, 64]]
    with torch.no_grad():
        assert block.dw_kernel(5)[0, 0].tolist() == five
        assert block.dw_kernel(3)[0, 0].tolist() == three
        assert torch.equal(block.dw_kernel(7)[0, 0], torch.arange(49.0).reshape(7, 7))


def test_layout_errors_name_the_keys(reference_dir: Path, tmp_path: Path) -> None:
    sd = _state(_rows(reference_dir, LAYOUTS[0]))
    broken = dict(sd)
    del broken["feature_mix_layer.bn.bias"]
    broken["blocks.3.mobile_inverted_conv.extra.weight"] = torch.zeros(1)
    with pytest.raises(
        ConfigError,
        match=r"1 unknown keys \(blocks\.3\.mobile_inverted_conv\.extra\.weight\); "
        r"1 missing \(feature_mix_layer\.bn\.bias\)",
    ):
        load_ofa_supernet(broken)
    wrong = dict(sd, **{"classifier.linear.bias": torch.zeros(10)})
    with pytest.raises(ConfigError, match=r"classifier\.linear\.bias is \(10,\), not \(1000,\)"):
        load_ofa_supernet(wrong)
    half = _state(_rows(reference_dir, LAYOUTS[1]))
    del half["first_conv.conv.weight_range"]
    with pytest.raises(ConfigError, match="weight_range/activation_range not on every conv"):
        load_ofa_supernet(half)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"junk\.pt: not a PyTorch checkpoint"):
        load_ofa_supernet(tmp_path / "junk.pt")
    nan = dict(sd, **{"classifier.linear.bias": torch.full((1000,), float("nan"))})  # a network "measuring" chance
    with pytest.raises(ConfigError, match=r"tensor 'classifier\.linear\.bias' holds non-finite values"):
        load_ofa_supernet(nan)


def test_supernet_eval_measures_apq_subnets_on_an_image_folder(reference_dir: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """`apqopt supernet eval --supernet CHECKPOINT --data imagefolder:DIR`: the file is recognised by its
    layout; images are resized to the space's 224x224."""
    torch.save({"state_dict": _state(_rows(reference_dir, LAYOUTS[1]))}, tmp_path / "apq_quant.pth")
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 4)):
        for cls in ("n01440764", "n01443537"):
            (tmp_path / "imgs" / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "imgs" / split / cls / f"{i}.JPEG")
    weights = str(tmp_path / "apq_quant.pth")
    assert main(["supernet", "eval", "smallest", "--supernet", weights]) == 2
    assert "records no data to measure on; pass --data" in capsys.readouterr().err
    assert load_supernet(weights).space.name == "apq-mbv2"
    data = f"imagefolder:{tmp_path / 'imgs'}"
    assert main(["supernet", "eval", "smallest", "--supernet", weights, "--data", data, "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert '"images": 8' in out and '"accuracy"' in out
    # collect measures on --data too, and its dataset says which images: records never mix across data
    out_file = tmp_path / "fp.jsonl"
    argv = ["collect", "fp", "--space", "apq-mbv2", "--supernet", weights, "--n", "2", "--eval-images", "8"]
    assert main([*argv, "--data", data, "--out", str(out_file), "--quiet"]) == 0
    from apqopt.supernet.collect import load_dataset

    header, records = load_dataset(out_file)
    assert header["config"]["supernet"].endswith(f"@{data}") and len(records) == 2
    assert main([*argv, "--out", str(out_file), "--quiet"]) == 2  # no --data: this file records none
    assert main([*argv, "--data", data, "--storage", f"sqlite:///{tmp_path / 's.db'}"]) == 2
