"""joint-ilp: evolution over architectures whose bits are each the exact ILP policy of a supernet-wide
sensitivity table; the table's design, file format and measurement."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from apqopt.cli import main
from apqopt.errors import ConfigError
from apqopt.search import make_searcher
from apqopt.search.base import Run
from apqopt.search.ilp import OperatorCosts, solve
from apqopt.search.problem import Problem
from apqopt.sensitivity import SensitivityTable, design
from apqopt.shipped import sensitivity_path
from apqopt.space import Block, space_from_dict, space_to_dict
from apqopt.supernet.mqe import measure_table
from tests.helpers import LUT, SP, capacity, problem

CHOICES = tuple((w, a) for w in SP.bits for a in SP.bits)


def synthetic_table(seed: int = 0) -> SensitivityTable:
    """Fewer bits hurt more, by a random amount per cell: a table with a clear, non-uniform optimum."""
    rng = np.random.default_rng(seed)
    bits = np.array([w + a for w, a in CHOICES], dtype=float)
    shape = (SP.n_blocks, len(SP.kernels), 3, 2, len(CHOICES))
    values = rng.uniform(0.5, 2.0, shape[:4])[..., None] * (17.0 - bits) ** 2 / 100
    return SensitivityTable(SP.name, values, CHOICES, {"synthetic": True})


def test_every_architecture_gets_its_exact_ilp_policy() -> None:
    """Each evaluated network's bits are the optimum of OHQ's integer program for its architecture, with
    costs priced independently (``OperatorCosts.from_lut``); the budget counts distinct networks."""
    torch.set_num_threads(1)
    table = synthetic_table()
    res = make_searcher("joint-ilp", seed=1, table=table).run(problem(limit=0.6), 300)
    ev = res.evaluated
    assert len(ev) == 300 == len({r.tobytes() for r in SP.canonical(ev.genes)}) and ev.feasible.all()
    assert res.notes["ilp_solves"] >= 300
    for i in np.random.default_rng(0).choice(len(ev), 25, replace=False):
        cand = SP.to_candidates(ev.genes[i : i + 1])[0]
        costs = OperatorCosts.from_lut(cand, LUT)
        sens = table.for_candidate(cand)
        best = solve(sens, costs, {"latency": 0.6})
        mine = np.array([CHOICES.index(p) for b in cand.blocks for p in ((b.pw_w, b.pw_a), (b.dw_w, b.dw_a))])
        got, want = sens[np.arange(len(mine)), mine].sum(), sens[np.arange(len(best)), best].sum()
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), i  # ties may pick another policy of equal value
        assert ev.latency[i] <= 0.6


def test_bits_follow_the_table_not_the_evolution() -> None:
    """Flip the table (more bits hurt more) and the same search picks the fewest bits: the ILP decides."""
    torch.set_num_threads(1)
    t = synthetic_table()
    flipped = SensitivityTable(SP.name, t.values[..., ::-1].copy(), CHOICES, {})
    mean_bits = {}
    for name, table in (("normal", t), ("flipped", flipped)):
        ev = make_searcher("joint-ilp", seed=0, table=table).run(problem(limit=0.6), 150).evaluated
        act = SP.active(ev.genes)
        mean_bits[name] = SP.block_genes(ev.genes)[:, :, 2:][act].mean()
    assert mean_bits["normal"] > 1.0 > 0.05 > mean_bits["flipped"]  # choice index 0 = 4 bits


def test_without_a_limit_the_population_spreads_along_the_front() -> None:
    torch.set_num_threads(1)
    p = Problem(SP, capacity, LUT)
    ev = make_searcher("joint-ilp", seed=0, table=synthetic_table()).run(p, 200).evaluated
    bits = SP.block_genes(ev.genes)[:, :, 2:]
    per_net = np.array([bits[i][SP.active(ev.genes[i : i + 1])[0]].mean() for i in range(len(ev))])
    assert per_net.min() < 0.6 and per_net.max() > 1.4  # both cheap and rich policies


def test_design_measures_every_block_choice_among_random_neighbours() -> None:
    archs = design(SP, replicates=2, seed=0)
    assert len(archs) == 2 * len(SP.kernels) * 3
    seen: dict[tuple[int, int, int], int] = {}
    for cand in archs:
        assert cand.depths == tuple(s.max_depth for s in SP.stages)
        for b, blk in SP.active_blocks(cand):
            key = (b, blk.kernel, blk.middle)
            seen[key] = seen.get(key, 0) + 1
    assert len(seen) == SP.n_blocks * 9 and set(seen.values()) == {2}
    assert len({c.blocks for c in archs}) == len(archs)  # no two design networks alike


def test_table_file_round_trips_and_bad_files_are_named(tmp_path: Path) -> None:
    t = synthetic_table()
    values = t.values.copy()
    values[0, 0, 2] = np.nan  # a cell a block lacks
    t = SensitivityTable(SP.name, values, CHOICES, {"images": 64})
    path = t.save(tmp_path / "t.json")
    back = SensitivityTable.load(path, space="fmnist")
    np.testing.assert_array_equal(back.values, t.values)
    assert back.choices == CHOICES and back.meta == {"images": 64}
    doc = json.loads(path.read_text())
    for bad, words in (
        ({**doc, "format": "pickle"}, "not a sensitivity table"),
        ({**doc, "shape": [1, 2, 3]}, "does not fit space 'fmnist'"),
    ):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=words) as e:
            SensitivityTable.load(tmp_path / "bad.json")
        assert "bad.json" in str(e.value)
    with pytest.raises(ConfigError, match="not 'apq-mbv2'"):
        SensitivityTable.load(path, space="apq-mbv2")
    with pytest.raises(ConfigError, match="apqopt sensitivity --space fmnist"):
        make_searcher("joint-ilp", table=str(tmp_path / "none.json")).run(problem(), 10)


def test_sensitivity_command_never_overwrites_the_shipped_table_unasked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sensitivity", "--supernet", str(tmp_path / "w.pt")]) == 2
    assert "--supernet" in capsys.readouterr().err  # (the weights file does not exist)
    (tmp_path / "w.pt").write_bytes(b"x")
    assert main(["sensitivity", "--supernet", str(tmp_path / "w.pt")]) == 2
    err = capsys.readouterr().err
    assert "--out is required" in err and err.count("\n") == 1


def test_table_is_each_design_networks_mqe(fmnist_available: None, tmp_path: Path) -> None:
    """measure_table puts every operator's MQE value of each design network in its block's cell (on a small
    space of 4 blocks, so the whole design runs in seconds)."""
    from apqopt.supernet.evaluate import bn_slice, reestimate_bn
    from apqopt.supernet.mqe import mqe_sensitivity, synthetic_inputs
    from apqopt.supernet.network import Supernet

    d = space_to_dict(SP)
    d.update(name="tiny-sensitivity", kernels=[3, 5], middle_ratios=[3.0, 6.0])
    d["stages"] = [{"c_out": 16, "stride": 1, "depths": [1, 2]}, {"c_out": 24, "stride": 2, "depths": [1, 2]}]
    d["tail"][0].update(c_in=24, h_in=7)
    sp = space_from_dict(d)
    torch.manual_seed(0)
    net = Supernet(sp)
    choices = ((4, 4), (8, 4))
    table = measure_table(net, replicates=2, images=8, cache_dir=tmp_path, choices=choices)
    assert np.isfinite(table.values).all() and table.values.shape == (4, 2, 2, 2, 2)
    assert table.meta["networks"] == 8 and len(list(tmp_path.glob("mqe-*.npy"))) == 8  # each pass cached
    per_net = []
    for cand in design(sp, 2, 0):
        sub = net.extract(cand)
        reestimate_bn(sub, bn_slice(space=sp.name))
        x = synthetic_inputs(8, sp.input_size, sp.image_channels, 0)
        per_net.append((cand, mqe_sensitivity(sub, x, choices)))
    for b in range(4):  # each cell: the mean of its two replicates' measurements
        for k, kernel in enumerate(sp.kernels):
            for m, middle in enumerate(sp.middle_choices[b]):
                vals = [
                    s[2 * i : 2 * i + 2]
                    for cand, s in per_net
                    for i, (bb, blk) in enumerate(sp.active_blocks(cand))
                    if bb == b and (blk.kernel, blk.middle) == (kernel, middle)
                ]
                assert len(vals) == 2
                np.testing.assert_allclose(table.values[b, k, m], np.mean(vals, axis=0), rtol=1e-6)


def test_shipped_table_holds_the_shipped_supernets_mqe(shipped_supernet) -> None:  # type: ignore[no-untyped-def]
    """One cell of the shipped table, re-measured from scratch: quantize one operator of the design network
    that measured it and take the KL divergence of the output (what its meta says it is)."""
    from apqopt.supernet.evaluate import bn_slice, reestimate_bn
    from apqopt.supernet.mqe import synthetic_inputs
    from apqopt.supernet.quant import quantize

    table = SensitivityTable.load(sensitivity_path("fmnist"), space="fmnist")
    meta = table.meta
    assert meta["replicates"] == 1 and meta["data"] == "synthetic"  # one measurement per cell: no averaging
    cand = design(SP, 1, meta["seed"])[3]
    sub = shipped_supernet.extract(cand)
    reestimate_bn(sub, bn_slice(space=SP.name))
    x = synthetic_inputs(meta["images"], SP.input_size, SP.image_channels, meta["seed"])
    b, blk = list(SP.active_blocks(cand))[7]
    # W4A4 everywhere, but only operator 2*7+1 (block 7's depthwise) is quantized
    policy = SP.candidate(tuple(tuple(Block(y.kernel, y.middle, 4, 4, 4, 4) for y in s) for s in cand.stages))
    with torch.no_grad():
        ref = F.log_softmax(sub(x), dim=1)
        q = quantize(sub, policy, x, fixed_bits=None, operators={2 * 7 + 1})
        kl = float(F.kl_div(F.log_softmax(q(x), dim=1), ref, log_target=True, reduction="batchmean"))
    k, m = SP.kernels.index(blk.kernel), SP.middle_choices[b].index(blk.middle)
    cell = table.values[b, k, m, 1]
    # the thread count moves float32 sums by ~0.1%; the neighbouring bit pairs differ by far more
    assert cell[CHOICES.index((4, 4))] == pytest.approx(kl, rel=1e-2)
    assert all(abs(v - kl) > 0.05 * kl for i, v in enumerate(cell) if i != CHOICES.index((4, 4)))


def test_fixed_bits_and_precisions_the_table_lacks_are_never_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ILP only picks what the problem allows: fixed bit genes keep their value in what joint-ilp
    proposes (not only after the run re-applies them: the ILP must plan its costs with them), and a
    precision the table has no entry for (allow_missing, e.g. a host that cannot run it) is left out."""
    torch.set_num_threads(1)
    fixed = np.full(SP.n_genes, -1, dtype=np.int64)
    for b in range(SP.n_blocks):
        fixed[SP.block_gene(b, "pw_w")], fixed[SP.block_gene(b, "pw_a")] = SP.bits.index(4), SP.bits.index(8)
    p = Problem(SP, capacity, LUT, constraints={"latency": 0.6}, fixed=fixed)
    proposed: list[np.ndarray] = []
    evaluate = Run.evaluate

    def spy(run: Run, genes: np.ndarray):  # type: ignore[no-untyped-def]
        proposed.append(np.array(genes))
        return evaluate(run, genes)

    monkeypatch.setattr(Run, "evaluate", spy)
    ev = make_searcher("joint-ilp", seed=0, table=synthetic_table()).run(p, 100).evaluated
    asked = np.concatenate(proposed)
    asked_bits = SP.block_genes(asked)[:, :, 2:][SP.active(asked)]
    assert (asked_bits[:, :2] == [SP.bits.index(4), SP.bits.index(8)]).all()
    act = SP.active(ev.genes)
    bits = SP.block_genes(ev.genes)[:, :, 2:]
    assert ev.feasible.all() and (bits[act][:, :2] == [SP.bits.index(4), SP.bits.index(8)]).all()
    assert (bits[act][:, 2:] < SP.bits.index(8)).any()  # the depthwise bits are still the ILP's to lower
    no_w4 = dataclasses.replace(LUT, entries={k: v for k, v in LUT.entries.items() if k[7] != 4})
    p = Problem(SP, capacity, no_w4, constraints={"latency": 0.6}, allow_missing=True)
    ev = make_searcher("joint-ilp", seed=0, table=synthetic_table()).run(p, 100).evaluated
    w = SP.block_genes(ev.genes)[:, :, [2, 4]][SP.active(ev.genes)]
    assert ev.feasible.all() and (w > 0).all()  # no 4-bit weights anywhere
