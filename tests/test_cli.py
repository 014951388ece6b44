"""The `apqopt` commands as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from apqopt.cli import main
from apqopt.hardware.bitfusion import BitFusion
from apqopt.hardware.build import build_lut
from apqopt.hardware.lut import LUT, shipped_lut_path


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "apqopt.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_output_into_a_closed_pipe_is_no_error() -> None:
    """`apqopt ... | head`: the reader leaving early ends the command quietly, status 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "apqopt", "space", "sample", "--space", "apq-mbv2", "--n", "3000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    assert proc.stdout is not None
    proc.stdout.read(10)
    proc.stdout.close()  # as `head` does after its lines
    assert proc.wait(timeout=60) == 0
    assert proc.stderr is not None and proc.stderr.read() == b""


def test_help_lists_commands() -> None:
    out = run("--help").stdout
    for cmd in ("run", "space", "lut"):
        assert cmd in out
    assert "price one candidate" in run("lut", "--help").stdout


@pytest.mark.slow
def test_run_is_the_whole_pipeline(tmp_path: Path, shipped_supernet: object) -> None:
    """`apqopt run` on the embedded defaults (small settings, no --storage): tables, searchers compared and
    recorded in the default storage ($APQOPT_HOME/apqopt.db, read back with Optuna's own API), each run's
    best feasible candidate measured for real and stored beside its prediction; the closing line names
    the storage it wrote."""
    import optuna

    from apqopt.studies import load_history

    env = {**os.environ, "APQOPT_HOME": str(tmp_path / "home")}
    args = ["run", "--samples", "2000", "--budget", "100", "--seeds", "0", "--searchers", "random", "evolution"]
    res = subprocess.run(
        [sys.executable, "-m", "apqopt.cli", *args, "--verify", "1", "--quiet"],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert "priced 2,000 random candidates" in res.stdout
    assert "MobileNetV2-like candidate" in res.stdout and "8.72 ms" in res.stdout  # APQ's own table: 8.72
    assert "| evolution |" in res.stdout and "| random |" in res.stdout
    url = f"sqlite:///{tmp_path / 'home' / 'apqopt.db'}"
    assert f"apqopt dashboard --storage {url}" in res.stdout.strip().splitlines()[-1]
    summaries = optuna.get_all_study_summaries(url)
    assert sorted(s.user_attrs["searcher"] for s in summaries) == ["evolution", "random"]
    for summary in summaries:
        assert summary.n_trials == 100 and summary.study_name.startswith("run-")
        study = optuna.load_study(study_name=summary.study_name, storage=url)
        (entry,) = study.user_attrs["verified"].values()
        assert 0.5 < entry["measured_accuracy"] < 1 and 0.5 < entry["predicted_accuracy"] < 1
        ev = load_history(study)  # one pick: the run's most accurate feasible candidate, not its cheapest
        assert entry["predicted_accuracy"] == pytest.approx(ev.accuracy[ev.feasible].max())
        assert entry["latency_ms"] > ev.latency[ev.feasible].min()
    assert list((tmp_path / "home" / "reports").glob("run-*/compare.md"))


@pytest.mark.parametrize("space", ["fmnist", "apq-mbv2"])
def test_lut_build_regenerates_shipped_byte_for_byte(tmp_path: Path, space: str) -> None:
    """The command a shipped table records rebuilds it exactly (apq-mbv2's is built in apq-table mode)."""
    out = tmp_path / f"{space}.csv"
    recorded = LUT.load(shipped_lut_path(space)).command.split()[1:]  # after "apqopt"
    assert recorded[:2] == ["lut", "build"] and ("--mode" in recorded) == (space == "apq-mbv2")
    assert main([*recorded, "--out", str(out), "--quiet", "--format", "both"]) == 0
    assert out.read_bytes() == shipped_lut_path(space).read_bytes()
    if space == "apq-mbv2":
        assert out.with_suffix(".dict").read_bytes() == shipped_lut_path(space).with_suffix(".dict").read_bytes()


def test_lut_build_with_user_config(tmp_path: Path) -> None:
    cfg = tmp_path / "bf.json"
    cfg.write_text(json.dumps({"name": "bf_big", "rows": 32, "cols": 64, "clock_mhz": 1000.0}))
    out = tmp_path / "big.csv"
    assert main(["lut", "build", "--space", "fmnist", "--config", str(cfg), "--out", str(out), "--quiet"]) == 0
    big, ref = LUT.load(out), LUT.load(shipped_lut_path("fmnist"))
    assert big.config["rows"] == 32 and "--config bf.json" in big.command
    assert all(big.entries[k][0] <= ref.entries[k][0] for k in ref.entries)
    cfg.write_text("{bad")
    assert main(["lut", "build", "--space", "fmnist", "--config", str(cfg), "--out", str(out), "--quiet"]) == 2


def test_build_resumes_from_checkpoint(tmp_path: Path) -> None:
    """Finished chunks in the checkpoint are reused, not recomputed; the checkpoint goes when done."""
    model = BitFusion()
    first = build_lut("fmnist", model, progress=False)
    ckpt = tmp_path / "ckpt.jsonl"
    config = {"space": "fmnist", "bits": [4, 6, 8], **model.config.to_dict()}
    shapes = len(first.shapes())
    planted = [[42.0, 43.0]] * shapes  # distinguishable from any real cost
    ckpt.write_text(json.dumps({"config": config, "chunk": 0, "costs": planted}) + "\n" + '{"torn')
    resumed = build_lut("fmnist", model, progress=False, checkpoint=ckpt)
    w4a4 = [k for k in resumed.entries if k[7:] == (4, 4)]
    assert all(resumed.entries[k] == (42.0, 43.0) for k in w4a4)
    assert all(resumed.entries[k] == first.entries[k] for k in resumed.entries if k[7:] != (4, 4))
    assert not ckpt.exists()


def test_lut_price_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = json.dumps(
        {
            "ks": [3] * 21,
            "e": [6] * 21,
            "d": [2, 3, 4, 3, 3, 1],
            **{f"{f}_bits_setting": [8] * 21 for f in ("pw_w", "pw_a", "dw_w", "dw_a")},
        }
    )
    assert main(["lut", "price", "--apq-spec", spec, "--layers"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out.splitlines()[-1])["latency_ms"] == pytest.approx(8.7166, abs=1e-3)  # APQ's table: 8.72
    assert "b20_project" in out
    assert main(["lut", "show", "--space", "fmnist", "--gaps", "fmnist"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["gaps"]["missing"] == 0 and info["entries"] == 855


def test_cli_errors_are_one_clear_line(tmp_path: Path) -> None:
    res = run("lut", "price", '{"space": "fmnist", "stages": [[{"kernel": 9, "middle": 48}]]}')
    assert res.returncode == 2
    assert "apqopt: error: space 'fmnist': expected 5 stages" in res.stderr and "Traceback" not in res.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("# apqopt-lut v1\n")
    res = run("lut", "show", "--lut", str(bad))
    assert res.returncode == 2 and "header lacks" in res.stderr
    res = run("lut", "price", "--apq-spec", "{not json")
    assert res.returncode == 2 and "not valid JSON" in res.stderr


def test_compare_on_one_architecture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--architecture`: every searcher only chooses that network's bits (how HAQ/OHQ are compared)."""
    import optuna

    from apqopt import get_space
    from apqopt.predictor import AccuracyPredictor
    from apqopt.space import BIT_FIELDS

    sp = get_space("fmnist")
    AccuracyPredictor("fmnist", variant="wide", seed=2).init_weights().save(tmp_path / "q.pt")
    arch = sp.uniform((3, 3, 3, 3, 3), kernel=5, middle=1)
    store = str(tmp_path / "s.log")
    args = ["compare", "--architecture", arch.to_json(), "--searchers", "random", "evolution", "--seeds", "0"]
    args += ["--budget", "100", "--latency", "0.6", "--predictor", str(tmp_path / "q.pt"), "--storage", store]
    assert main([*args, "--out", str(tmp_path / "rep"), "--quiet"]) == 0
    bits = {sp.gene_names()[sp.block_gene(b, f)] for b in range(sp.n_blocks) for f in BIT_FIELDS}
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(store))
    names = optuna.get_all_study_names(journal)
    assert len(names) == 2
    for name in names:
        study = optuna.load_study(study_name=name, storage=journal)
        archs = {tuple(sorted((k, v) for k, v in t.params.items() if k not in bits)) for t in study.trials}
        assert len(archs) == 1 and len(study.trials) == 100, name


def test_searcher_params_and_defaults_in_help(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--searcher-param` reaches the searcher (and the study's params); bad ones are named before any
    search work; --help lists the searchers and the defaults."""
    import optuna

    store = str(tmp_path / "s.log")
    common = ["--budget", "60", "--latency", "0.6", "--storage", store, "--quiet"]
    ok = ["search", "--searcher", "evolution", "--searcher-param", "population=20", "--study", "e", *common]
    assert main([*ok, "--searcher-param", "mutate_prob=0.3"]) == 0
    from apqopt.studies import open_storage

    params = optuna.load_study(study_name="e", storage=open_storage(store)).user_attrs["params"]
    assert params["population"] == 20 and params["mutate_prob"] == 0.3
    capsys.readouterr()
    for bad, words in (
        (["--searcher-param", "populaton=20"], "no searcher of ['evolution'] takes 'populaton'"),
        (["--searcher-param", "population"], "must look like KEY=VALUE"),
        (["--searcher-param", "random.batch=5"], "searcher 'random' is not run here"),
        (["--searcher-param", "seed=3"], "set seeds with --seed"),
    ):
        assert main(["search", "--searcher", "evolution", "--study", "x", *common, *bad]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err
    assert optuna.get_all_study_names(open_storage(store)) == ["e"]  # nothing recorded for the bad ones
    cmp = ["compare", "--searchers", "random", "evolution", "--seeds", "0", "--tag", "t", *common]
    assert main([*cmp, "--searcher-param", "evolution.population=30", "--out", str(tmp_path / "rep")]) == 0
    studies = optuna.get_all_study_summaries(open_storage(store))
    by = {s.user_attrs["searcher"]: s.user_attrs["params"] for s in studies if s.study_name.startswith("t-")}
    assert by["evolution"]["population"] == 30 and by["random"]["batch"] == 1000
    out = run("search", "--help").stdout
    assert "(default: 2000)" in out and "optuna-tpe" in out and "APQ's evolution" in out


def test_bugs_keep_their_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a user's mistake becomes one line and exit 2; a bug inside apqopt propagates."""
    import apqopt.cli as cli
    import apqopt.cli.hardware as family

    def broken(args: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(family, "cmd_space_show", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["space", "show"])


def test_verify_names_a_missing_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    res = run("verify", "--study", "nope", "--storage", url)
    assert res.returncode == 2 and "no storage at" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "v.db").exists()  # reading never creates the database
    assert run("search", "--searcher", "random", "--budget", "5", "--latency", "0.6", "--storage", url).returncode == 0
    res = run("verify", "--study", "nope", "--storage", url)
    assert res.returncode == 2 and "no study 'nope'" in res.stderr and "Traceback" not in res.stderr


def test_lut_build_writes_what_was_asked_and_deletes_nothing(tmp_path: Path) -> None:
    """`--format apq --out t.dict` once reported success and deleted t.dict; every format now writes
    exactly the files it names."""
    from apqopt.cli import main
    from apqopt.hardware.lut import LUT, load_shipped

    shipped = load_shipped("fmnist")
    assert main(["lut", "build", "--format", "apq", "--out", str(tmp_path / "t.dict"), "--quiet"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.dict"]
    assert LUT.load(tmp_path / "t.dict").entries == shipped.entries
    assert main(["lut", "build", "--format", "both", "--out", str(tmp_path / "b.csv"), "--quiet"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.csv", "b.dict", "t.dict"]
    assert LUT.load(tmp_path / "b.csv").to_csv() == shipped.to_csv()


def test_table_writers_never_replace_unasked_nor_their_input(tmp_path: Path) -> None:
    """lut build/measure refuse an existing output without --overwrite (exit 2, one line, bytes unchanged),
    and refuse to write over their own input (the hardware config) even with it."""
    cfg = tmp_path / "C.json"
    cfg.write_text(json.dumps({"name": "bf_big", "rows": 32, "cols": 64}))
    before = cfg.read_bytes()
    for extra in ([], ["--overwrite"]):
        args = ["lut", "build", "--mode", "apq-table", "--format", "apq", "--config", str(cfg), "--out", str(cfg)]
        res = run(*args, *extra)
        assert res.returncode == 2 and res.stderr.count("\n") == 1 and "input" in res.stderr
        assert cfg.read_bytes() == before
    out = tmp_path / "t.csv"
    out.write_text("mine\n")
    res = run("lut", "build", "--out", str(out), "--quiet")
    assert res.returncode == 2 and "already exists" in res.stderr and "--overwrite" in res.stderr
    assert out.read_text() == "mine\n"
    assert run("lut", "build", "--out", str(out), "--quiet", "--overwrite").returncode == 0
    assert LUT.load(out).entries == LUT.load(shipped_lut_path("fmnist")).entries
    host = tmp_path / "host.csv"
    host.write_text("mine\n")
    res = run("lut", "measure", "--space", "fmnist", "--out", str(host), "--quiet")
    assert res.returncode == 2 and "already exists" in res.stderr and host.read_text() == "mine\n"


def test_dashboard_address_is_checked_and_exposure_is_said(tmp_path: Path) -> None:
    """--address that does not resolve: exit 2, one line naming it. One other than loopback: a warning line
    naming the exposure before the app starts."""
    import optuna

    from apqopt.cli.results import address_is_loopback

    assert address_is_loopback("127.0.0.1") and address_is_loopback("localhost") and address_is_loopback("::1")
    assert not address_is_loopback("0.0.0.0") and not address_is_loopback("::")
    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(storage=url, study_name="x")
    res = run("dashboard", "--storage", url, "--address", "999.1.1.1")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "--address" in res.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "apqopt.cli", "dashboard", "--storage", url, "--address", "0.0.0.0", "--port", "8631"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "warning: --address 0.0.0.0 is reachable from other machines" in line and "s.db" in line
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_compare_records_in_the_default_storage_and_resumes(tmp_path: Path) -> None:
    """`apqopt compare` with no --storage records into $APQOPT_HOME/apqopt.db (read back with Optuna's API);
    without --tag, its study names carry a fingerprint of the settings: the same command again reads its
    studies back, and another comparison records beside them instead of being refused."""
    import optuna

    env = {**os.environ, "APQOPT_HOME": str(tmp_path / "home")}
    base = ["compare", "--searchers", "random", "--seeds", "0", "--latency", "0.6", "--quiet", "--out"]

    def compare_cli(*extra: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "apqopt.cli", *base, str(tmp_path / "rep"), *extra]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)

    first = compare_cli("--budget", "30")
    assert first.returncode == 0, first.stderr
    url = f"sqlite:///{tmp_path / 'home' / 'apqopt.db'}"
    (summary,) = optuna.get_all_study_summaries(url)
    assert summary.n_trials == 30 and summary.study_name.startswith("compare-") and summary.user_attrs["budget"] == 30
    assert compare_cli("--budget", "30").returncode == 0  # the same command: read back, nothing new
    assert len(optuna.get_all_study_summaries(url)) == 1
    # another comparison into the same report folder: refused before any work, the report kept ...
    other = compare_cli("--budget", "40")
    assert other.returncode == 2 and "--out:" in other.stderr and "holds another comparison's report" in other.stderr
    assert json.loads((tmp_path / "rep" / "compare.json").read_text())["budget"] == 30
    assert len(optuna.get_all_study_summaries(url)) == 1
    # ... unless asked; its studies record beside the first ones (another fingerprint, no collision)
    other = compare_cli("--budget", "40", "--overwrite")
    assert other.returncode == 0, other.stderr
    assert json.loads((tmp_path / "rep" / "compare.json").read_text())["budget"] == 40
    assert sorted(s.n_trials for s in optuna.get_all_study_summaries(url)) == [30, 40]


def test_every_option_of_every_command_says_what_it_does() -> None:
    """--help of every command: each option has a text (its default is shown by the formatter)."""
    import argparse

    from apqopt.cli import build_parser

    def walk(p: argparse.ArgumentParser, path: str) -> list[str]:
        out = []
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    out += walk(sub, f"{path} {name}")
            elif not isinstance(a, argparse._HelpAction) and not (a.help or "").strip():
                out.append(f"{path} {'/'.join(a.option_strings) or a.dest}")
        return out

    assert walk(build_parser(), "apqopt") == []
    assert "(default: 8501)" in run("dashboard", "--help").stdout


def test_ohq_from_the_cli_measures_its_sensitivities_on_the_supernet(tmp_path: Path) -> None:
    """search/ measures nothing (no torch there): `apqopt search --searcher ohq` gives OHQ the supernet's
    MQE by its own parameters, and the study records them as before; the library alone asks for them."""
    import optuna

    from apqopt import get_space
    from apqopt.errors import ConfigError
    from apqopt.problem_spec import load_problem
    from apqopt.search import make_searcher
    from apqopt.studies import open_storage
    from apqopt.supernet.mqe import SupernetMQE, with_measured_sensitivity

    arch = get_space("fmnist").uniform((2, 2, 2, 2, 2), kernel=3, middle=0)
    store = str(tmp_path / "s.log")
    args = ["search", "--searcher", "ohq", "--architecture", arch.to_json(), "--latency", "0.5", "--quiet"]
    params = ["--searcher-param", "images=4", "--searcher-param", "cache_dir=null"]
    assert main([*args, *params, "--storage", store]) == 0
    study = optuna.load_study(study_name="ohq-fmnist-seed0", storage=open_storage(store))
    assert study.user_attrs["params"]["sensitivity"] is None and study.user_attrs["params"]["images"] == 4
    assert len(study.trials) >= 2 and all(t.user_attrs["feasible"] for t in study.trials)
    p = load_problem("fmnist", latency=0.5).restricted_to(arch)
    with pytest.raises(ConfigError, match="SupernetMQE"):
        make_searcher("ohq").run(p, 10)
    ohq = with_measured_sensitivity(make_searcher("ohq", images=4, cache_dir=None))
    assert ohq.sensitivity == SupernetMQE(images=4, cache_dir=None) and ohq.recorded_params()["sensitivity"] is None
