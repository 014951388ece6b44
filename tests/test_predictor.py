"""Accuracy predictor: APQ's network and checkpoint layout, transfer, bits reach the prediction, metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from apqopt import get_space
from apqopt.predictor import AccuracyPredictor, pairwise_accuracy, ranking_report
from apqopt.predictor.estimator import PredictorError

SP = get_space("fmnist")


def _toy(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A structured target over real encodings: more capacity and more bits -> higher accuracy.
    Used only to exercise the estimator's mechanics; measured data lives in apqopt/assets."""
    genes = SP.sample(n, seed)
    enc = SP.encode(genes)
    arch = enc[:, : SP.arch_width].sum(1) / 10 + 0.3 * enc[:, 20 * 3 :: 3][:, :20].sum(1) / 20
    bits4 = enc[:, SP.arch_width :: 3].sum(1)  # 4-bit choices
    return genes, enc, np.clip(0.5 + 0.04 * arch - 0.01 * bits4, 0, 1).astype(np.float32)


def test_metrics() -> None:
    t = np.array([0.1, 0.2, 0.3, 0.4])
    assert pairwise_accuracy(t, t * 2) == 1.0 and pairwise_accuracy(t, -t) == 0.0
    rng = np.random.default_rng(0)
    a, b = rng.random(200), rng.random(200)
    rep = ranking_report(a, b)
    assert rep["pairwise_accuracy"] == pytest.approx((1 + stats.kendalltau(a, b).statistic) / 2, abs=1e-9)
    assert rep["rmse"] >= rep["mae"] > 0 and rep["n"] == 200
    with pytest.raises(ValueError, match="1-D of equal length"):
        pairwise_accuracy(a, b[:-1])


def test_apq_network_shape_and_names() -> None:
    pred = AccuracyPredictor("apq-mbv2", variant="branch")
    model = pred._new_model()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["layers.0.0.weight"] == (400, 520) and shapes["quantize_fc.weight"] == (400, 252)
    assert shapes["layers.2.0.weight"] == (400, 400) and shapes["regressor.weight"] == (1, 400)


def test_loads_apq_checkpoint_layout(tmp_path: Path) -> None:
    """A state dict in APQ's released layout (acc_quant.pt) loads for apq-mbv2 and predicts from bits."""
    torch.manual_seed(0)
    sd = {f"layers.{i}.0.weight": torch.randn(400, 520 if i == 0 else 400) * 0.05 for i in range(3)}
    sd |= {f"layers.{i}.0.bias": torch.zeros(400) for i in range(3)}
    sd |= {
        "regressor.weight": torch.randn(1, 400) * 0.05,
        "regressor.bias": torch.tensor([0.7]),
        "quantize_fc.weight": torch.randn(400, 252) * 0.05,
        "quantize_fc.bias": torch.zeros(400),
    }
    torch.save(sd, tmp_path / "acc_quant.pt")
    pred = AccuracyPredictor.from_apq_checkpoint(tmp_path / "acc_quant.pt")
    assert pred.variant == "branch"
    sp = get_space("apq-mbv2")
    genes = sp.sample(5, 0)
    out = pred.predict_genes(genes)
    ref = torch.relu(torch.tensor(sp.encode(genes)[:, :520]) @ sd["layers.0.0.weight"].T) + (
        torch.tensor(sp.encode(genes)[:, 520:]) @ sd["quantize_fc.weight"].T
    )
    for i in (1, 2):
        ref = torch.relu(ref @ sd[f"layers.{i}.0.weight"].T)
    np.testing.assert_allclose(out, (ref @ sd["regressor.weight"].T + 0.7).squeeze(1).numpy(), rtol=1e-4, atol=1e-5)
    fp_sd = {k: v for k, v in sd.items() if not k.startswith("quantize_fc")}
    assert AccuracyPredictor.from_apq_checkpoint(fp_sd).variant == "fp"
    with pytest.raises(PredictorError, match="reads 520 features; space 'fmnist' has 120"):
        AccuracyPredictor.from_apq_checkpoint(sd, space="fmnist")


def test_fit_predict_transfer_and_bits_matter(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    genes, enc, y = _toy(1500)
    fp = AccuracyPredictor("fmnist", "fp", max_epochs=60, patience=10).fit(enc, y)
    assert fp.predict(enc).shape == (1500,)
    q = AccuracyPredictor.transfer(fp, enc[:300], y[:300], max_epochs=60, patience=10)
    # changing only the bits changes the prediction (APQ's search code lost the policy)
    g2 = genes[:50].copy()
    for b in range(SP.n_blocks):
        for f in ("pw_w", "pw_a", "dw_w", "dw_a"):
            g2[:, SP.block_gene(b, f)] = 0  # all 4-bit
    assert np.abs(q.predict_genes(genes[:50]) - q.predict_genes(g2)).max() > 1e-3
    assert np.array_equal(fp.predict_genes(genes[:50]), fp.predict_genes(g2))
    _, enc_t, y_t = _toy(400, seed=9)
    assert q.score(enc_t, y_t) > 0.7
    path = q.save(tmp_path / "q.pt", metrics={"pairwise_accuracy": 0.9})
    back = AccuracyPredictor.load(path, space="fmnist")
    np.testing.assert_array_equal(back.predict(enc_t), q.predict(enc_t))
    meta = json.loads(Path(str(path) + ".json").read_text())
    assert meta["params"]["variant"] == "branch" and meta["input"]["encoding_width"] == 360
    with pytest.raises(PredictorError, match="trained for space 'fmnist', not 'apq-mbv2'"):
        AccuracyPredictor.load(path, space="apq-mbv2")
    Path(path).write_bytes(Path(path).read_bytes()[:100])
    with pytest.raises(PredictorError, match="not a readable predictor"):
        AccuracyPredictor.load(path)


@pytest.mark.parametrize(("variant", "members"), [("wide", 1), ("wide", 2), ("branch", 2)])
def test_transfer_starts_from_fp(variant: str, members: int) -> None:
    torch.set_num_threads(1)
    _, enc, y = _toy(400)
    fp = AccuracyPredictor("fmnist", "fp", max_epochs=20, patience=5, members=members).fit(enc, y)
    q = AccuracyPredictor.transfer(fp, enc[:100], y[:100], variant=variant, max_epochs=1, lr=1e-12)  # type: ignore[arg-type]
    assert q.members == members
    np.testing.assert_allclose(q.predict(enc[:20]), fp.predict(enc[:20]), atol=1e-4)
    np.testing.assert_allclose(q.predict_members(enc[:20]), fp.predict_members(enc[:20]), atol=1e-4)


def test_ensemble_averages_distinct_members(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    _, enc, y = _toy(600)
    ens = AccuracyPredictor("fmnist", "wide", members=3, max_epochs=30, patience=5, seed=1).fit(enc, y)
    per = ens.predict_members(enc[:50])
    assert per.shape == (3, 50) and np.abs(per[0] - per[1]).max() > 1e-4  # own seeds, own splits
    np.testing.assert_allclose(ens.predict(enc[:50]), per.mean(0), rtol=1e-5, atol=1e-6)
    # member seeds are disjoint across predictor seeds: member 0 of seed 1 is not member 0 of seed 0
    other = AccuracyPredictor("fmnist", "wide", members=3, seed=0).init_weights()
    assert not torch.equal(
        other._nets()[0].regressor.weight,
        AccuracyPredictor("fmnist", "wide", members=3, seed=1).init_weights()._nets()[0].regressor.weight,
    )
    back = AccuracyPredictor.load(ens.save(tmp_path / "e.pt"))
    assert back.members == 3
    np.testing.assert_array_equal(back.predict(enc[:50]), ens.predict(enc[:50]))
    assert len(json.loads((tmp_path / "e.pt.json").read_text())["fit"]["members"]) == 3
    fp = AccuracyPredictor("fmnist", "fp", members=3, max_epochs=2).fit(enc, y)
    with pytest.raises(PredictorError, match="keeps the fp predictor's 3 member"):
        AccuracyPredictor.transfer(fp, enc, y, members=2)
    with pytest.raises(PredictorError, match=r"members must be a whole number in 1\.\.256"):
        AccuracyPredictor("fmnist", "fp", members=0).fit(enc, y)


def test_std_is_the_calibrated_spread_of_the_members() -> None:
    """predict(X, return_std=True): the mean of the members and their spread (ddof 1) times the scale that
    calibrate() fits so that the central 80% interval holds 80% of the calibration pairs."""
    from apqopt.predictor.metrics import interval_coverage

    _, enc, y = _toy(300, seed=3)
    ens = AccuracyPredictor("fmnist", "wide", members=3, max_epochs=15, patience=5, seed=2).fit(enc[:200], y[:200])
    per = ens.predict_members(enc[200:])
    mean, std = ens.predict(enc[200:], return_std=True)
    np.testing.assert_allclose(mean, per.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, per.std(0, ddof=1), rtol=1e-6)  # not calibrated yet: scale 1
    assert ens.std_scale_ == 1.0
    noisy = y[200:] + np.random.default_rng(0).normal(0, 0.01, 100).astype(np.float32)
    ens.calibrate(enc[200:], noisy, coverage=0.8)
    assert ens.std_scale_ != 1.0
    mean2, std2 = ens.predict(enc[200:], return_std=True)
    np.testing.assert_allclose(std2, per.std(0, ddof=1) * ens.std_scale_, rtol=1e-6)
    assert interval_coverage(noisy, mean2, std2, 0.8) == pytest.approx(0.8, abs=0.011)
    with pytest.raises(PredictorError, match="ensemble"):
        AccuracyPredictor("fmnist", "wide").init_weights().predict(enc[:3], return_std=True)


def test_shipped_predictor_is_calibrated_where_it_was_not_fitted() -> None:
    """The shipped ensemble carries a calibrated scale (well above 1: raw member spread covers far less than
    it claims), and its 80% intervals cover 70-90% of held-out networks whichever half the scale is fitted on."""
    from apqopt.predictor.metrics import interval_coverage
    from apqopt.predictor.train import load_xy
    from apqopt.shipped import asset_dir, predictor_path

    quant = AccuracyPredictor.load(predictor_path("fmnist"))
    assert quant.metadata_["calibration"]["coverage"] == 0.8 and quant.std_scale_ > 2
    X, y = load_xy(asset_dir("fmnist") / "quant_heldout.jsonl", "fmnist", bits=True)
    mean, std = quant.predict(X, return_std=True)
    assert interval_coverage(y, mean, std / quant.std_scale_, 0.8) < 0.5  # the raw spread
    even = np.arange(len(y)) % 2 == 0
    for fit, check in ((even, ~even), (~even, even)):
        quant.calibrate(X[fit], y[fit], 0.8)
        m, s = quant.predict(X[check], return_std=True)
        assert 0.7 <= interval_coverage(y[check], m, s, 0.8) <= 0.9


def test_bad_inputs() -> None:
    pred = AccuracyPredictor("fmnist", "branch")
    with pytest.raises(PredictorError, match="not fitted"):
        pred.predict(np.zeros((1, 360)))
    with pytest.raises(PredictorError, match="needs 360 features, got 120"):
        pred.fit(np.zeros((20, 120)), np.zeros(20))
    with pytest.raises(PredictorError, match="fractions"):
        pred.fit(np.zeros((20, 360)), np.full(20, 91.0))
    with pytest.raises(PredictorError, match="variant must be"):
        AccuracyPredictor("fmnist", "big").init_weights()  # type: ignore[arg-type]


def test_scikit_learn_conventions() -> None:
    """__init__ only stores (clone works, with a name or a SearchSpace), params come from the signature,
    set_params names unknown keys, fitted attributes end in '_', score is a float."""
    from sklearn.base import clone

    from apqopt.errors import ConfigError

    sp = get_space("fmnist")
    for space in ("fmnist", sp):
        pred = AccuracyPredictor(space, "branch", hidden=32, max_epochs=3)
        twin = clone(pred)
        assert twin.get_params() == pred.get_params() and twin.model_ is None
    assert list(pred.get_params()) == AccuracyPredictor.param_names()
    assert pred.set_params(hidden=16) is pred and pred.hidden == 16
    with pytest.raises(ConfigError, match="no parameter"):
        pred.set_params(width=3)
    genes = sp.sample(64, 0)
    X, y = sp.encode(genes), np.linspace(0.8, 0.9, 64)
    score = pred.fit(X, y).score(X, y)
    assert isinstance(score, float) and 0 <= score <= 1
    assert clone(pred).model_ is None and pred.model_ is not None  # clone drops what fit learned
    assert set(pred.report(X, y)) >= {"pairwise_accuracy", "kendall_tau"}


def test_scikit_learn_sees_a_regressor_and_its_tools_work() -> None:
    """Tags, scikit-learn's own estimator checks that apply to a model of fixed input width, check_is_fitted,
    cross_val_score and GridSearchCV over the predictor's parameters (they failed on __sklearn_tags__)."""
    import warnings

    from sklearn.base import is_regressor
    from sklearn.exceptions import NotFittedError
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.utils import estimator_checks as checks
    from sklearn.utils.validation import check_is_fitted

    pred = AccuracyPredictor("fmnist", "branch", hidden=16, depth=2, max_epochs=5, patience=5)
    assert is_regressor(pred) and pred.__sklearn_tags__().estimator_type == "regressor"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for check in (
            checks.check_no_attributes_set_in_init,
            checks.check_get_params_invariance,
            checks.check_set_params,
            checks.check_estimator_cloneable,
            checks.check_estimator_repr,
            checks.check_do_not_raise_errors_in_init_or_set_params,
        ):
            check("AccuracyPredictor", pred)
        checks.check_parameters_default_constructible("AccuracyPredictor", pred)
    with pytest.raises(NotFittedError):
        check_is_fitted(pred)
    sp = get_space("fmnist")
    genes = sp.sample(90, 1)
    X = sp.encode(genes)
    y = 0.80 + 0.01 * sp.summary(genes)["w_bits"]  # accuracy grows with weight bits
    scores = cross_val_score(pred, X, y, cv=3)
    assert scores.shape == (3,) and ((scores >= 0) & (scores <= 1)).all()
    search = GridSearchCV(pred, {"hidden": [8, 16]}, cv=2).fit(X, y)
    assert search.best_params_["hidden"] in (8, 16)
    check_is_fitted(search.best_estimator_)
    check_is_fitted(pred.fit(X, y))


def test_train_cli_on_a_slice_of_the_shipped_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`apqopt predictor train` end to end on the first records of the shipped (measured) datasets:
    predictors and report.json land in --out, and `predictor evaluate` reproduces the report. Two quantized
    datasets (the uniform and the cost draw, as the shipped build) are pooled; one measured otherwise is refused,
    named (exit 2)."""
    from apqopt.cli import main
    from apqopt.supernet.collect import load_dataset

    assets = Path(__file__).resolve().parents[1] / "apqopt" / "assets" / "fmnist"
    sizes = {"fp": 80, "quant": 40, "quant_cost": 20, "quant_heldout": 40}
    for name, n in sizes.items():
        header, recs = load_dataset(assets / f"{name}.jsonl")
        lines = [json.dumps(header)] + [json.dumps(r) for r in recs[:n]]
        (tmp_path / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "pred"
    data = [f"--fp={tmp_path / 'fp.jsonl'}", f"--heldout={tmp_path / 'quant_heldout.jsonl'}", "--quant"]
    pooled = [str(tmp_path / "quant.jsonl"), str(tmp_path / "quant_cost.jsonl")]
    args = ["predictor", "train", *data, *pooled, "--out", str(out), "--variant", "wide", "--members", "2", "--quiet"]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert (report["n_fp"], report["n_quant"], report["n_heldout"]) == (80, 60, 40)
    assert report["data"]["quant"] == pooled
    assert report["settings"]["variant"] == "wide" and {"transfer_wide", "transfer_branch", "scratch"} <= set(report)
    assert len(report["transfer_wide"]["members_pairwise_accuracy"]) == 2
    assert report["wall_s"] > 0  # the build's predictor step, for bench_supernet
    quant = AccuracyPredictor.load(out / "quant.pt")
    assert quant.variant == "wide" and quant.members == 2
    from apqopt.predictor.train import load_xy

    X, y = load_xy(tmp_path / "quant_heldout.jsonl", "fmnist", bits=True)
    assert quant.score(X, y) == pytest.approx(report["transfer_wide"]["pairwise_accuracy"])
    header, recs = load_dataset(tmp_path / "quant_cost.jsonl")  # the same networks, measured on 1,000 images
    header["config"]["eval_images"] = 1000
    other = tmp_path / "quant_1k.jsonl"
    other.write_text("\n".join(json.dumps(x) for x in [header, *recs]) + "\n")
    args[args.index(pooled[1])] = str(other)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "quant_1k.jsonl" in err[0] and "eval_images" in err[0], err


def test_shipped_predictor_reproduces_its_report() -> None:
    """The shipped quantization-aware predictor scores what its report.json (and the README) claims
    on the shipped held-out set, and that set was collected on the shipped supernet's weights."""
    from apqopt.predictor.train import load_xy
    from apqopt.supernet.collect import load_dataset
    from apqopt.supernet.train import weights_identity

    assets = Path(__file__).resolve().parents[1] / "apqopt" / "assets" / "fmnist"
    report = json.loads((assets / "predictor" / "report.json").read_text())
    quant = AccuracyPredictor.load(assets / "predictor" / "quant.pt")
    X, y = load_xy(assets / "quant_heldout.jsonl", "fmnist", bits=True)
    assert len(y) == report["n_heldout"] == 200
    shipped = report[f"transfer_{report['settings']['variant']}"]
    assert quant.score(X, y) == pytest.approx(shipped["pairwise_accuracy"], abs=1e-6)
    assert shipped["pairwise_accuracy"] >= 0.80  # the bar
    for name in ("fp", "quant", "quant_cost", "quant_heldout"):
        header, _ = load_dataset(assets / f"{name}.jsonl")
        assert header["config"]["supernet"] == weights_identity(assets / "supernet.pt")


@pytest.mark.parametrize("space", ["fmnist", "apq-mbv2"])
def test_predicting_genes_reads_the_ones_and_equals_the_dense_forward(space: str) -> None:
    """predict_genes (the search path: the first layer sums the weight columns of each row's ones) gives the
    dense forward's numbers on the encoding, for every variant, single networks and ensembles, and follows
    the weights when they change (the cached column layout is refreshed)."""
    sp = get_space(space)
    genes = sp.sample(257, 4)
    for variant in ("fp", "branch", "wide"):
        for members in (1, 2):
            pred = AccuracyPredictor(space, variant, members=members, seed=3).init_weights()
            with torch.no_grad():
                for p in pred.model_.parameters():  # type: ignore[union-attr]
                    p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
            dense = pred.predict_members(sp.encode(genes, bits=variant != "fp"))
            np.testing.assert_allclose(pred._members_hot(genes), dense, atol=2e-6)
            np.testing.assert_allclose(pred.predict_genes(genes), dense.mean(0), atol=2e-6)
            with torch.no_grad():
                pred._nets()[0].layers[0][0].weight.mul_(2.0)
            dense = pred.predict_members(sp.encode(genes, bits=variant != "fp"))
            np.testing.assert_allclose(pred._members_hot(genes), dense, atol=5e-6)


def test_fit_warns_when_measured_accuracies_have_no_spread() -> None:
    """Saturated data (a user's easy 3-class folder: every network at 100%) cannot teach a ranking: fit says
    so with a warning; data with a spread fits silently."""
    import warnings

    genes = SP.sample(40, 0)
    X = SP.encode(genes)
    with pytest.warns(UserWarning, match="barely differ"):
        AccuracyPredictor("fmnist", "wide", max_epochs=2).fit(X, np.ones(40))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AccuracyPredictor("fmnist", "wide", max_epochs=2).fit(X, np.linspace(0.8, 0.9, 40))


def test_a_predictor_knows_where_it_extrapolates(tmp_path: Path) -> None:
    """fit records the range its training networks span (summary features); extrapolation is 0 inside it
    and grows outside it; the range survives save/load. The shipped predictor learnt from the cost draw's
    corners too (smallest and largest architecture at the lowest and highest bits), so it flags nothing: not the
    cheapest network, which it extrapolated to before (0.58 outside), nor any held-out one."""
    from apqopt.problem_spec import load_problem
    from apqopt.shipped import asset_dir
    from apqopt.supernet.collect import dataset_arrays

    sp = get_space("fmnist")
    rng = np.random.default_rng(0)
    genes = sp.sample(300, rng)
    bg = sp.block_genes(genes)
    bg[..., 2:] = np.maximum(bg[..., 2:], 1)  # trained on 6- and 8-bit policies only
    X = sp.encode(genes, bits=True)
    pred = AccuracyPredictor("fmnist", "branch", hidden=16, depth=1, max_epochs=2).fit(X, rng.random(300))
    assert pred.extrapolation(genes).max() == 0
    low = genes.copy()
    sp.block_genes(low)[..., 2:] = 0  # every layer at 4 bits: far below anything seen
    assert (pred.extrapolation(low) > 0.25).all()
    pred.save(tmp_path / "p.pt")
    again = AccuracyPredictor.load(tmp_path / "p.pt")
    np.testing.assert_allclose(again.extrapolation(low), pred.extrapolation(low))

    problem = load_problem("fmnist")
    cheapest = np.zeros((1, sp.n_genes), dtype=np.int64)
    assert not problem.outside_data(cheapest).any() and problem.predictor.extrapolation(cheapest)[0] == 0
    _, held, _ = dataset_arrays(asset_dir("fmnist") / "quant_heldout.jsonl")
    assert not problem.outside_data(held).any()
