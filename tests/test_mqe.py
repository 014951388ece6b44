"""OHQ's masked quantization estimation: one operator at a time, lower bits hurt more, cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from apqopt import get_space
from apqopt.supernet.evaluate import reestimate_bn
from apqopt.supernet.mqe import mqe_sensitivity, synthetic_inputs
from apqopt.supernet.network import Supernet


def test_mqe_orders_bits_and_caches(tmp_path: Path) -> None:
    torch.manual_seed(0)
    sp = get_space("fmnist")
    sub = Supernet(sp).extract(sp.smallest())
    x = synthetic_inputs(32)
    reestimate_bn(sub, synthetic_inputs(256, seed=1))  # real statistics, so outputs depend on inputs
    choices = ((4, 4), (8, 8))
    s = mqe_sensitivity(sub, x, choices, cache_dir=tmp_path)
    assert s.shape == (2 * sum(sp.smallest().depths), 2)
    assert np.all(s >= -1e-7)
    assert s[:, 0].mean() > s[:, 1].mean()  # W4A4 perturbs the output more than W8A8
    assert len(list(tmp_path.glob("mqe-*.npy"))) == 1
    np.testing.assert_array_equal(mqe_sensitivity(sub, x, choices, cache_dir=tmp_path), s)
