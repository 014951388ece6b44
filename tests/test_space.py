"""Search space: structure, validation, encoding, serialisation, variation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apqopt import Block, Candidate, InvalidCandidateError, get_space
from apqopt.interop.apq import from_apq_spec, to_apq_spec
from apqopt.search.operators import crossover, mutate

SPACES = ["apq-mbv2", "fmnist"]


def test_apq_mbv2_matches_design() -> None:
    sp = get_space("apq-mbv2")
    assert sp.n_blocks == 21
    assert [len(m) for m in sp.middle_choices] == [5] + [7] * 4 + [11] * 4 + [21] * 4 + [25] * 4 + [49] * 4
    assert (sp.arch_width, sp.bits_width, sp.encoding_width) == (520, 252, 772)
    assert sp.middle_choices[0] == (64, 72, 80, 88, 96)
    # spatial sizes into the stages: 112, 56, 28, 14, 14, 7
    firsts = [0, 4, 8, 12, 16, 20]
    assert [sp.block_io[b][2] for b in firsts] == [112, 56, 28, 14, 14, 7]
    assert [sp.block_io[b][3] for b in firsts] == [2, 2, 2, 1, 2, 1]
    assert sp.stages[-1].depths == (1,)
    assert len(sp.layer_shapes()) == 779


def test_encoding_layout_is_apq() -> None:
    """Kernel one-hots of all blocks, then middle one-hots, then bits per field (pw_w, pw_a, dw_w, dw_a)."""
    sp = get_space("apq-mbv2")
    cand = sp.uniform(kernel=5, middle=0, bits=8)
    cand = sp.candidate((((Block(5, 64, 4, 6, 8, 4), *cand.stages[0][1:])), *cand.stages[1:]))
    enc = sp.encode(sp.from_candidates([cand]))[0]
    assert enc[1] == 1 and enc[0] == enc[2] == 0  # block 0 kernel 5
    assert enc[63] == 1  # block 0 middle 64 is the first middle dim
    assert enc[520 + 0] == 1  # pw_w of block 0 = 4
    assert enc[520 + 63 + 1] == 1  # pw_a of block 0 = 6
    assert enc[520 + 126 + 2] == 1  # dw_w of block 0 = 8
    assert enc[520 + 189 + 0] == 1  # dw_a of block 0 = 4
    assert enc.sum() == 21 * 6


def test_skipped_blocks_are_zero() -> None:
    sp = get_space("apq-mbv2")
    cand = sp.smallest()
    enc = sp.encode(sp.from_candidates([cand]))[0]
    assert enc[3 * 2 : 3 * 4].sum() == 0  # blocks 2, 3 of stage 0 are skipped
    assert enc.sum() == sum(cand.depths) * 6
    assert np.array_equal(sp.encode(sp.from_candidates([cand]), bits=False)[0], enc[:520])


@pytest.mark.parametrize("name", SPACES)
def test_clear_errors(name: str) -> None:
    sp = get_space(name)
    good = sp.uniform()
    s0 = good.stages[0]
    with pytest.raises(InvalidCandidateError, match=r"block 0: kernel=4 is not allowed; allowed values: \[3, 5, 7\]"):
        get_space(name).candidate(((Block(4, s0[0].middle), *s0[1:]), *good.stages[1:]))
    with pytest.raises(InvalidCandidateError, match=r"block 1: dw_a=5 is not allowed; allowed values: \[4, 6, 8\]"):
        get_space(name).candidate(((s0[0], Block(3, s0[1].middle, dw_a=5), *s0[2:]), *good.stages[1:]))
    with pytest.raises(InvalidCandidateError, match=r"block 0: middle=7 is not allowed"):
        get_space(name).candidate(((Block(3, 7), *s0[1:]), *good.stages[1:]))
    with pytest.raises(InvalidCandidateError, match=r"stage 0: depth=1 is not allowed; allowed values: \[2, 3, 4\]"):
        get_space(name).candidate(((s0[0],), *good.stages[1:]))
    with pytest.raises(InvalidCandidateError, match=r"expected .* stages"):
        get_space(name).candidate(good.stages[:-1])
    with pytest.raises(InvalidCandidateError, match=r"gene matrix must be \(N, "):
        sp.encode(np.zeros((2, 3), dtype=int))
    bad = sp.sample(2, 0)
    bad[1, 0] = 7
    with pytest.raises(InvalidCandidateError, match="row 1, gene 'depth_0': index 7 out of range"):
        sp.validate_matrix(bad)
    for col in (0, sp.block_gene(0, "kernel"), sp.n_genes - 1):  # the first value past each end, not only far ones
        for edge in (sp.cardinalities[col], -1):
            bad = sp.sample(2, 0)
            bad[0, col] = edge
            with pytest.raises(InvalidCandidateError, match=f"row 0, gene '{sp.gene_names()[col]}': index {edge} "):
                sp.validate_matrix(bad)
    with pytest.raises(InvalidCandidateError, match="unknown space"):
        get_space("nope")


def test_json_errors() -> None:
    with pytest.raises(InvalidCandidateError, match="not valid JSON"):
        Candidate.from_json("{oops")
    with pytest.raises(InvalidCandidateError, match="needs keys"):
        Candidate.from_json("{}")
    with pytest.raises(InvalidCandidateError, match="expected keys"):
        Candidate.from_dict({"space": "fmnist", "stages": [[{"kernal": 3}]]})


def test_decode_rejects_malformed() -> None:
    sp = get_space("fmnist")
    enc = sp.encode(sp.sample(1, 0))
    enc2 = enc.copy()
    enc2[0, :3] = 1
    with pytest.raises(InvalidCandidateError, match="'kernel' one-hot is malformed"):
        sp.decode(enc2)
    with pytest.raises(InvalidCandidateError, match="wide"):
        sp.decode(enc[:, :-1])


def test_sample_100k_is_one_call_and_uniform() -> None:
    sp = get_space("apq-mbv2")
    genes = sp.sample(100_000, 0)
    assert genes.shape == (100_000, sp.n_genes)
    freq = np.bincount(genes[:, sp.block_gene(0, "kernel")], minlength=3) / len(genes)
    assert np.allclose(freq, 1 / 3, atol=0.01)
    sp.validate_matrix(genes)


def test_mutation_changes_depth_and_keeps_rate() -> None:
    sp = get_space("apq-mbv2")
    genes = sp.sample(20_000, 1)
    mut = mutate(sp, genes, prob=0.1, rng=2)
    changed_depth = (mut[:, :5] != genes[:, :5]).mean()  # stage 5 has a single depth
    # re-sampling with prob 0.1 changes a 3-choice gene with prob 0.1 * 2/3
    assert changed_depth == pytest.approx(0.1 * 2 / 3, abs=0.01)
    block_changed = (sp.block_genes(mut) != sp.block_genes(genes)).any(axis=2).mean()
    assert 0.085 < block_changed < 0.105  # ~0.1 minus the rare re-sample that draws the same genes


def test_crossover_takes_whole_blocks_from_parents() -> None:
    sp = get_space("fmnist")
    a, b = sp.sample(500, 3), sp.sample(500, 4)
    child = crossover(sp, a, b, rng=5)
    ba, bb, bc = sp.block_genes(a), sp.block_genes(b), sp.block_genes(child)
    from_a = (bc == ba).all(axis=2)
    from_b = (bc == bb).all(axis=2)
    assert (from_a | from_b).all()
    assert 0.4 < from_a.mean() < 0.6


def test_apq_spec_roundtrip_and_filler() -> None:
    sp = get_space("apq-mbv2")
    cand = sp.smallest(bits=4)
    spec = to_apq_spec(sp, cand)
    assert len(spec["ks"]) == 21 and spec["d"] == [2, 2, 2, 2, 2, 1]
    assert spec["e"][0] == 4.0 and spec["pw_w_bits_setting"][0] == 4
    assert spec["pw_w_bits_setting"][2] == 8  # skipped block: APQ's filler
    assert from_apq_spec(sp, spec) == cand
    spec["d"][5] = 3  # APQ samples a depth for its 1-block last stage and ignores it
    assert from_apq_spec(sp, spec) == cand
    spec["e"][0] = 4.2  # APQ rounds e * C_in to the nearest multiple of 8 (67.2 -> 64)
    assert from_apq_spec(sp, spec) == cand
    spec["e"][0] = 3.0
    with pytest.raises(InvalidCandidateError, match=r"e=3\.0 is not allowed"):
        from_apq_spec(sp, spec)
    with pytest.raises(InvalidCandidateError, match="missing key"):
        from_apq_spec(sp, {"ks": []})


def test_layers_and_macs() -> None:
    sp = get_space("apq-mbv2")
    layers = sp.layers(sp.uniform((2, 3, 4, 3, 3, 1), kernel=3, middle=-1, bits=8))
    assert len(layers) == 16 * 3
    assert layers[0].shape == (16, 96, 112, 1, 1, 0, 1)
    assert layers[1].shape == (96, 96, 112, 3, 2, 1, 96)
    assert layers[2].shape == (96, 24, 56, 1, 1, 0, 1)
    assert layers[-1].shape == (1152, 320, 7, 1, 1, 0, 1)
    fm = get_space("fmnist")
    assert fm.macs(fm.uniform()) > 2 * fm.macs(fm.smallest())


# ---------------------------------------------------------------------- properties
@st.composite
def genes_of(draw: st.DrawFn, name: str) -> np.ndarray:
    sp = get_space(name)
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(1, 20))
    return sp.sample(n, seed)


@pytest.mark.parametrize("name", SPACES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_roundtrips(name: str, data: st.DataObject) -> None:
    sp = get_space(name)
    genes = data.draw(genes_of(name))
    canon = sp.canonical(genes)
    assert np.array_equal(sp.decode(sp.encode(genes)), canon)
    cands = sp.to_candidates(genes)
    assert np.array_equal(sp.from_candidates(cands), canon)
    for c in cands:
        assert Candidate.from_json(c.to_json()) == c
        assert Candidate.from_dict(json.loads(json.dumps(c.to_dict()))) == c
        assert from_apq_spec(sp, json.loads(json.dumps(to_apq_spec(sp, c)))) == c


@pytest.mark.parametrize("name", SPACES)
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), prob=st.floats(0, 1))
def test_variation_stays_valid(name: str, seed: int, prob: float) -> None:
    """Children are valid rows, every gene comes from a parent or (mutation) from a whole re-sampled
    group, and the extreme rates behave: prob 0 copies the parent."""
    sp = get_space(name)
    a, b = sp.sample(16, seed), sp.sample(16, seed + 1)
    mut, kid = mutate(sp, a, prob, seed), crossover(sp, a, b, seed)
    for g in (mut, kid):
        assert g.shape == a.shape and g.dtype == np.int64
        assert ((g >= 0) & (g < sp.cardinalities)).all()
        sp.to_candidates(g)
    assert ((kid == a) | (kid == b)).all()
    bk, ba, bb = sp.block_genes(kid), sp.block_genes(a), sp.block_genes(b)
    assert ((bk == ba).all(axis=2) | (bk == bb).all(axis=2)).all()  # whole blocks, never a mix
    np.testing.assert_array_equal(mutate(sp, a, 0.0, seed), a)


@pytest.mark.parametrize("name", SPACES)
@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    field=st.sampled_from(["kernel", "middle", "pw_w", "pw_a", "dw_w", "dw_a"]),
    value=st.integers(-3, 2000),
)
def test_invalid_values_always_raise_clear_error(name: str, seed: int, field: str, value: int) -> None:
    sp = get_space(name)
    cand = sp.to_candidates(sp.sample(1, seed))[0]
    blk = cand.stages[0][0]
    allowed = {"kernel": sp.kernels, "middle": sp.middle_choices[0]}.get(field, sp.bits)
    if value in allowed:
        return
    bad = Block(**{**blk.__dict__, field: value})
    with pytest.raises(InvalidCandidateError, match=f"stage 0 block 0: {field}={value} is not allowed"):
        get_space(name).candidate(((bad, *cand.stages[0][1:]), *cand.stages[1:]))


@pytest.mark.parametrize("name", ["fmnist", "apq-mbv2"])
def test_summary_features_equal_a_loop_over_candidates(name: str) -> None:
    """The vectorised summary (what the dashboard's trial table and importance show) against plain loops
    over each candidate's active blocks."""
    sp = get_space(name)
    genes = sp.sample(50, 3)
    got = sp.summary(genes)
    low = min(sp.bits)
    for i, cand in enumerate(sp.to_candidates(genes)):
        blocks = [blk for _, blk in sp.active_blocks(cand)]
        idx = [b for b, _ in sp.active_blocks(cand)]
        assert got["depth"][i] == len(blocks)
        assert got["kernel"][i] == pytest.approx(np.mean([b.kernel for b in blocks]))
        widths = [blk.middle / max(sp.middle_choices[b]) for b, blk in zip(idx, blocks)]
        assert got["width"][i] == pytest.approx(np.mean(widths))
        assert got["w_bits"][i] == pytest.approx(np.mean([(b.pw_w + b.dw_w) / 2 for b in blocks]))
        assert got["a_bits"][i] == pytest.approx(np.mean([(b.pw_a + b.dw_a) / 2 for b in blocks]))
        assert got[f"share_w{low}"][i] == pytest.approx(
            np.mean([(b.pw_w == low) + (b.dw_w == low) for b in blocks]) / 2
        )
        for s, stage in enumerate(cand.stages):
            want = np.mean([(b.pw_w + b.dw_w) / 2 for b in stage]) if stage else np.nan
            assert got[f"s{s}_w_bits"][i] == pytest.approx(want, nan_ok=True)
