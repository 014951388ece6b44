"""docs/own-task.md, run as written: a folder of images, a space file, and the whole measured chain (table,
supernet, fp and quantized datasets, predictor, search, verification) on them."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from apqopt.supernet.data import load_split

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "own-task.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(lang: str) -> list[str]:
    return [m.group(2) for m in BLOCK.finditer(PAGE.read_text()) if m.group(1) == lang]


@pytest.mark.slow
def test_own_task_page_runs_end_to_end(tmp_path: Path, fmnist_available: None) -> None:
    env = {**os.environ, "APQOPT_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}  # one core per xdist worker
    res = subprocess.run([sys.executable, "-c", "\n".join(blocks("python"))], cwd=tmp_path, env=env, text=True)
    assert res.returncode == 0
    (toml,) = blocks("toml")
    name = toml.splitlines()[0].lstrip("# ").strip()
    (tmp_path / name).write_text(toml)
    (bash,) = blocks("bash")
    outputs = {}
    for line in re.sub(r"\\\n\s*", " ", bash).splitlines():
        argv = shlex.split(line, comments=True)
        assert argv[0] == "apqopt"
        done = subprocess.run(
            [sys.executable, "-m", "apqopt", *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{line}\n{done.stderr[-3000:]}"
        outputs[" ".join(argv[1:3])] = done.stdout

    # the supernet learnt the folder's colour images (its report is on the folder's val split) ...
    largest = json.loads(outputs["supernet eval"].splitlines()[0])
    assert largest["images"] == 100 and largest["accuracy"] > 0.3  # 10 classes: chance is 0.1
    # ... every file carries the space, and the study was verified on the folder's images
    study = optuna.load_study(
        study_name="rgb32-evolution",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(tmp_path / "studies.log"))
        ),
    )
    assert study.user_attrs["space"] == "rgb32" and study.user_attrs["space_def"]["input_size"] == 32
    verified = study.user_attrs["verified"]
    assert len(verified) >= 1 and all(0 <= v["measured_accuracy"] <= 1 for v in verified.values())
    # ... and a trial of it exported to ONNX, run by onnxruntime on the folder's images
    assert (tmp_path / "rgb32.onnx").stat().st_size > 0 and "run on 100 val images" in outputs["export --study"]
    assert "feed it: RGB 32x32 (bilinear resize), pixels / 255, then (x - mean) / std" in outputs["export --study"]
    val = load_split("val", "imagefolder:" + str(tmp_path / "mydata"), str(tmp_path / name))
    assert val.images.shape[1:] == (3, 32, 32) and len(val) == 100
