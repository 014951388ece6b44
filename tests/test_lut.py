"""Lookup tables: APQ JSON and CSV formats, vectorised pricing, missing entries, bad files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from apqopt import get_space
from apqopt.hardware.lut import LUT, LUTError, LUTFormatError, MissingEntryError, apq_key, load_shipped

# fmnist's smallest candidate (depth 2 everywhere, kernel 3, expand 3, W4A4): block 0 is 16->48->16 at 14x14
BLOCK0 = {
    "(16, 48, 14, 1, 1, 0, 1)-W4A4": (0.5, 0.05),  # expand
    "(48, 48, 14, 3, 1, 1, 48)-W4A4": (0.25, 0.025),  # depthwise
    "(48, 16, 14, 1, 1, 0, 1)-W4A4": (0.125, 0.0125),  # project
}


def _table_for(cand_layers: list, default: tuple[float, float] = (1.0, 2.0)) -> dict:
    data = {"head": {"latency": 0.75, "energy": 0.5}, "tail": {"latency": 0.0625, "energy": 0.25}}
    for layer in cand_layers:
        data[apq_key(layer.shape, layer.w_bits, layer.a_bits)] = {"latency": default[0], "energy": default[1]}
    for key, (lat, en) in BLOCK0.items():
        data[key] = {"latency": lat, "energy": en}
    return data


def test_apq_json_prices_by_hand_checked_sums(tmp_path: Path) -> None:
    sp = get_space("fmnist")
    cand = sp.smallest(bits=4)
    layers = sp.layers(cand)
    assert len(layers) == 30
    path = tmp_path / "t.dict"
    path.write_text(json.dumps(_table_for(layers)))
    lut = LUT.load(path)
    cost = lut.price_candidate(cand)
    # blocks 0 and 1 have block 0's three shapes, and block 4's expand (16->48 at 14x14) is block 0's
    # expand too: 23 layers at 1 ms / 2 mJ, 2 x block 0, one more expand, head, tail
    assert cost.latency == pytest.approx(23 * 1.0 + 2 * (0.5 + 0.25 + 0.125) + 0.5 + 0.75 + 0.0625)
    assert cost.energy == pytest.approx(23 * 2.0 + 2 * (0.05 + 0.025 + 0.0125) + 0.05 + 0.5 + 0.25)
    assert [c[1] for c in cost.layers[:3]] == [0.5, 0.25, 0.125]
    lat, en = lut.price(sp, sp.from_candidates([cand]))
    assert lat[0] == pytest.approx(cost.latency) and en[0] == pytest.approx(cost.energy)


def test_missing_entry_is_named_or_infeasible(tmp_path: Path) -> None:
    sp = get_space("fmnist")
    cand = sp.smallest(bits=4)
    data = _table_for(sp.layers(cand))
    del data["(48, 48, 14, 3, 1, 1, 48)-W4A4"]
    lut = LUT.from_apq_json(json.dumps(data))
    with pytest.raises(MissingEntryError, match=r"b0_dw \(48, 48, 14, 3, 1, 1, 48\)-W4A4"):
        lut.price_candidate(cand)
    genes = sp.from_candidates([cand])
    with pytest.raises(MissingEntryError, match=r"b0_dw \(48, 48, 14, 3, 1, 1, 48\)-W4A4"):
        lut.price(sp, genes)
    lat, en = lut.price(sp, genes, on_missing="infeasible")
    assert math.isinf(lat[0]) and math.isinf(en[0])


def test_inactive_blocks_never_need_entries() -> None:
    """A table lacking every layer of skipped blocks still prices a shallow candidate."""
    sp = get_space("fmnist")
    cand = sp.smallest(bits=4)
    lut = LUT.from_apq_json(json.dumps(_table_for(sp.layers(cand))))
    genes = sp.from_candidates([cand])
    genes[:, sp.block_gene(2, "kernel")] = 2  # dormant gene of a skipped block
    assert np.isfinite(lut.price(sp, genes)[0]).all()


def test_apq_style_gap_report() -> None:
    """APQ's table lacks 7x7 depthwise with 4-bit activations; importing it must report the gap."""
    lut = load_shipped("apq-mbv2")
    data = json.loads(lut.to_apq_json())
    dropped = [
        k
        for k in data
        if k.startswith("(")
        and k.split(")")[0].split(", ")[3] == "7"
        and k.endswith("A4")
        and k.split(", ")[6].split(")")[0] != "1"
    ]
    for k in dropped:
        del data[k]
    apq = LUT.from_apq_json(json.dumps(data))
    gaps = apq.missing("apq-mbv2")
    assert len(gaps) == len(dropped) > 0
    assert all(g[3] == 7 and g[8] == 4 and g[6] == g[0] for g in gaps)
    assert load_shipped("apq-mbv2").missing("apq-mbv2") == []


@pytest.mark.parametrize("name", ["apq-mbv2", "fmnist"])
def test_vectorised_equals_loop(name: str) -> None:
    sp = get_space(name)
    lut = load_shipped(name)
    genes = sp.sample(300, 11)
    lat, en = lut.price(sp, genes)
    lat2, en2 = lut.price_loop(sp, genes)
    np.testing.assert_allclose(lat, lat2, rtol=1e-12)
    np.testing.assert_allclose(en, en2, rtol=1e-12)


def test_csv_roundtrip_and_apq_roundtrip(tmp_path: Path) -> None:
    lut = load_shipped("fmnist")
    again = LUT.from_csv(lut.to_csv())
    assert again.entries == lut.entries and again.head == lut.head and again.config == lut.config
    assert again.to_csv() == lut.to_csv()
    apq = LUT.load(lut.save(tmp_path / "x.dict"))
    assert apq.entries == lut.entries and apq.tail == lut.tail


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: "garbage\n" + t, "line 1: expected '# apqopt-lut v1'"),
        (lambda t: t.replace("# units: latency=ms energy=mJ", "# units: latency=s energy=J"), "units must be"),
        (lambda t: t.replace("# config: {", "# config: {{"), "config' is not JSON"),
        (lambda t: t.replace("role,c_in", "role,cin"), "expected columns"),
        (lambda t: t[: len(t) // 2], r"no '# end: N rows' line at the end \(file truncated\?\)"),
        (lambda t: t.replace("\n# end: 857 rows", "\n# end: 900 rows"), "end line says '900 rows' but 857 rows"),
        (
            lambda t: "\n".join(line if i != 10 else "1,2" for i, line in enumerate(t.splitlines())),
            "expected 12 fields",
        ),
        (
            lambda t: "\n".join(
                ln if not ln.startswith("tail,") else "layer,9,9,9,9,9,9,9,9,9,1.0,1.0" for ln in t.splitlines()
            ),
            "no tail",
        ),
        (  # the same layer x bits twice with different values: last-wins would hide which is right
            lambda t: t.replace(
                (row := next(ln for ln in t.splitlines() if ln.startswith("layer,"))) + "\n",
                f"{row}\n{row.rsplit(',', 2)[0]},9.0,9.0\n",
            ).replace("# end: 857 rows", "# end: 858 rows"),
            r"line \d+: duplicate of the entry on line \d+",
        ),
        (lambda t: t + "\n\n", None),  # a trailing blank line is not a truncation
        (lambda t: t.replace("\nlayer,16,", "\nlayer,sixteen,", 1), "invalid literal"),
        (lambda t: t.replace("\nhead,,,,,,,,,,", "\nhead,,,,,,,,,,-", 1), "cost must be a number in 0"),
        (lambda t: "", "empty file"),
    ],
)
def test_bad_csv_is_named(tmp_path: Path, mutate, message: str | None) -> None:  # type: ignore[no-untyped-def]
    text = load_shipped("fmnist").to_csv()
    path = tmp_path / "bad.csv"
    path.write_text(mutate(text))
    if message is None:
        assert LUT.load(path).entries == load_shipped("fmnist").entries
        return
    with pytest.raises(LUTFormatError, match=message) as info:
        LUT.load(path)
    assert str(path) in str(info.value)


def test_bad_apq_json(tmp_path: Path) -> None:
    text = load_shipped("fmnist").to_apq_json()
    (tmp_path / "trunc.dict").write_text(text[: len(text) // 2])
    with pytest.raises(LUTFormatError, match="not valid JSON"):
        LUT.load(tmp_path / "trunc.dict")
    bad_entry = {"head": {"latency": 1, "energy": 1}, "tail": {"latency": 1, "energy": 1}, "(1, 2)-W8A8": {}}
    (tmp_path / "key.dict").write_text(json.dumps(bad_entry))
    with pytest.raises(LUTFormatError, match="needs finite 'latency' and 'energy'"):
        LUT.load(tmp_path / "key.dict")
    with pytest.raises(LUTError, match="not found"):
        LUT.load(tmp_path / "nope.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(LUTFormatError, match="not a text file"):
        LUT.load(tmp_path / "bin.csv")


def test_a_replaced_table_prices_with_its_own_entries() -> None:
    """dataclasses.replace(lut, entries=...) gives a table whose prices come from its own entries, not from
    the original's compiled cache (it used to share it)."""
    import dataclasses

    sp = get_space("fmnist")
    lut = load_shipped("fmnist")
    genes = sp.from_candidates([sp.uniform(bits=4)])
    assert np.isfinite(lut.price(sp, genes)[0]).all()  # compiles the original's cache
    no_w4 = dataclasses.replace(lut, entries={k: v for k, v in lut.entries.items() if k[7] != 4})
    assert np.isinf(no_w4.price(sp, genes, on_missing="infeasible")[0]).all()
