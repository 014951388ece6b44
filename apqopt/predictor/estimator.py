"""The accuracy predictor as a scikit-learn-style estimator, with APQ's predictor transfer.

Why: during search the predictor replaces measuring accuracy, so it must be a plain, fast
estimator: ``fit(X, y)`` and ``predict(X)`` on the space's one-hot encodings (one matrix product for
100k candidates). The network is APQ's exactly: three hidden layers of 400 with ReLU and a scalar
regressor, trained with MSE on accuracy as a fraction, so APQ's released checkpoints load.

Quantization-aware variants:

* ``"branch"`` (APQ's code): the fp trunk reads the architecture part; a bit branch
  ``quantize_fc = Linear(bits, 400)`` is added after the first ReLU. :meth:`AccuracyPredictor.transfer`
  copies trunk and regressor from a full-precision predictor and fine-tunes on quantized pairs.
* ``"wide"``: the first layer reads architecture and bits together (transfer copies the architecture
  columns of the first layer and starts the bit columns at zero).

``members=k`` trains k copies of the network from different seeds (and validation splits) and
averages them (a deep ensemble). On the measured quantized data single networks differ by ±0.01 in
pairwise accuracy from seed to seed; the average of five ranks better than the typical member. With
``members=1`` (the default) the state dict is APQ's layout exactly.

Unlike APQ's released search code, which encodes every candidate as 8-bit when it calls the
predictor, the quantization-aware predictor here always reads the candidate's own policy.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from torch import nn
from tqdm import tqdm

from apqopt import devices
from apqopt.errors import ApqoptError, ConfigError, first_line
from apqopt.predictor.metrics import ranking_report
from apqopt.space import SearchSpace, adopt, carried, get_space
from apqopt.weights import WeightsError, check_weights, tensor_digest

Variant = Literal["fp", "branch", "wide"]


class PredictorError(ApqoptError, ValueError):
    """A predictor used with the wrong space or input, or a file that cannot be loaded."""


class MLP(nn.Module):
    """APQ's predictor network; parameter names match APQ's checkpoints (layers.{i}.0, regressor, quantize_fc)."""

    def __init__(self, arch_width: int, bits_width: int, variant: Variant, hidden: int = 400, depth: int = 3) -> None:
        super().__init__()
        self.arch_width, self.bits_width, self.variant = arch_width, bits_width, variant
        first = arch_width + (bits_width if variant == "wide" else 0)
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Linear(first if i == 0 else hidden, hidden), nn.ReLU()) for i in range(depth)
        )
        if variant == "branch":
            self.quantize_fc = nn.Linear(bits_width, hidden)
        self.regressor = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.variant == "branch":
            h = self.layers[0](x[:, : self.arch_width]) + self.quantize_fc(x[:, self.arch_width :])
        elif self.variant == "wide":
            h = self.layers[0](x)
        else:
            h = self.layers[0](x[:, : self.arch_width])
        for layer in self.layers[1:]:
            h = layer(h)
        return self.regressor(h).squeeze(1)

    def _columns(self, weight: torch.Tensor) -> torch.Tensor:
        """``weight.T`` laid out contiguously (one row per input column, what ``embedding_bag`` gathers fast),
        kept until the weight changes (an optimizer step or a load bumps its version)."""
        cache: dict[int, tuple[int, int, torch.Tensor]] = self.__dict__.setdefault("_hot_columns", {})
        key = (weight._version, weight.data_ptr())
        hit = cache.get(id(weight))
        if hit is None or hit[:2] != key:
            hit = cache[id(weight)] = (*key, weight.detach().T.contiguous())
        return hit[2]

    def forward_hot(
        self, arch: torch.Tensor, arch_off: torch.Tensor, bits: torch.Tensor, bits_off: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`forward` on one-hot rows given by where their ones are (``SearchSpace.encode_hot``): the
        first layer sums the weight columns of those ones (``embedding_bag``) instead of multiplying the
        zeros too. The same numbers as ``forward`` on the dense rows, to float rounding."""
        F = nn.functional
        first = self.layers[0][0]
        columns = self._columns(first.weight)
        h = F.embedding_bag(arch, columns[: self.arch_width], arch_off, mode="sum") + first.bias
        if self.variant == "wide":  # one first layer over both: its bit columns follow the architecture's
            h = h + F.embedding_bag(bits, columns[self.arch_width :], bits_off, mode="sum")
        h = torch.relu(h)
        if self.variant == "branch":
            bag = F.embedding_bag(bits, self._columns(self.quantize_fc.weight), bits_off, mode="sum")
            h = h + bag + self.quantize_fc.bias
        for layer in self.layers[1:]:
            h = layer(h)
        return self.regressor(h).squeeze(1)


class Ensemble(nn.Module):
    """Independently trained copies of one network, held together so that one state dict
    (``nets.{i}.…``) saves them; :meth:`AccuracyPredictor.predict` averages their outputs."""

    def __init__(self, nets: list[MLP]) -> None:
        super().__init__()
        self.nets = nn.ModuleList(nets)


@dataclass
class FitReport:
    epochs: int = 0
    best_epoch: int = 0
    train_mse: float = float("nan")
    val_mse: float = float("nan")
    history: list[float] = field(default_factory=list)


# the sizes that shape the network, bounded so that a file cannot ask for more memory than any machine has
SIZE_LIMITS = {"hidden": 16_384, "depth": 64, "members": 256}
RUN_ONLY = ("progress", "device")  # how one fit runs, not what the model is: not saved with it


def training_range(space: SearchSpace, X: np.ndarray) -> dict[str, list[float]]:
    """[min, max] of each summary feature over full-width encodings ``X`` (NaN features, e.g. a stage's
    bits where no row has it, are left out)."""
    feats = space.summary(space.decode(X))
    return {k: [float(np.nanmin(v)), float(np.nanmax(v))] for k, v in feats.items() if np.isfinite(v).any()}


class AccuracyPredictor(RegressorMixin, BaseEstimator):
    """Predicts accuracy (a fraction) from a space's one-hot encodings.

    ``variant="fp"`` reads only the architecture part (full-width input is accepted and sliced);
    ``"branch"``/``"wide"`` read architecture and bits. A scikit-learn regressor (tags, ``clone``,
    ``check_is_fitted``, ``cross_val_score``, ``GridSearchCV``); ``score`` is pairwise ranking accuracy.
    """

    # fitted state: set by fit/load/transfer only (scikit-learn: __init__ sets nothing but its arguments);
    # the class-level values are what an unfitted predictor reads, and metadata_ is read-only until written
    model_: MLP | Ensemble | None = None
    reports_: tuple[FitReport, ...] | list[FitReport] = ()
    metadata_: Mapping[str, Any] = MappingProxyType({})

    def __init__(
        self,
        space: str | SearchSpace = "fmnist",
        variant: Variant = "fp",
        hidden: int = 400,
        depth: int = 3,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 256,
        max_epochs: int = 1000,
        patience: int = 50,
        val_fraction: float = 0.1,
        members: int = 1,
        seed: int = 0,
        progress: bool = False,
        device: str = "cpu",
    ) -> None:
        # scikit-learn's contract: __init__ only stores its arguments (clone() relies on it); they are
        # checked where they are used (_space), so a bad value fails at fit/load, naming the parameter
        self.space, self.variant = space, variant
        self.hidden, self.depth = hidden, depth
        self.lr, self.weight_decay, self.batch_size = lr, weight_decay, batch_size
        self.max_epochs, self.patience, self.val_fraction = max_epochs, patience, val_fraction
        self.members, self.seed, self.progress = members, seed, progress
        self.device = device  # where fit() trains (apqopt.devices); the fitted model lives on the CPU

    def __sklearn_is_fitted__(self) -> bool:
        return self.model_ is not None

    def _meta(self) -> dict[str, Any]:
        """This predictor's own metadata, to write into (the class-level one is shared and read-only)."""
        if "metadata_" not in vars(self):
            self.metadata_ = {}
        return self.metadata_  # type: ignore[return-value]

    # ------------------------------------------------------------------ helpers
    @property
    def space_name(self) -> str:
        return self._space().name

    def _space(self) -> SearchSpace:
        """The search space, after checking the parameters that shape the network."""
        if self.variant not in ("fp", "branch", "wide"):
            raise PredictorError(f"variant must be 'fp', 'branch' or 'wide', got {self.variant!r}")
        for name, hi in SIZE_LIMITS.items():  # a file's "hidden": 10**12 asked for 480 TB, "wide" a traceback
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or not 1 <= v <= hi:
                raise PredictorError(f"{name} must be a whole number in 1..{hi:,}, got {v!r}")
        return get_space(self.space)

    def _input(self, X: np.ndarray | torch.Tensor) -> torch.Tensor:
        sp = self._space()
        x = torch.as_tensor(np.asarray(X, dtype=np.float32))
        if x.ndim != 2:
            raise PredictorError(f"X must be 2-D (N, features), got shape {tuple(x.shape)}")
        width = x.shape[1]
        if self.variant == "fp" and width in (sp.arch_width, sp.encoding_width):
            return x[:, : sp.arch_width]
        if self.variant != "fp" and width == sp.encoding_width:
            return x
        need = f"{sp.arch_width} or {sp.encoding_width}" if self.variant == "fp" else str(sp.encoding_width)
        raise PredictorError(f"predictor for space '{sp.name}' ({self.variant}) needs {need} features, got {width}")

    def _member_seeds(self) -> list[int]:
        # disjoint across predictor seeds: seed 0 uses 0..k-1, seed 1 uses k..2k-1
        return [self.seed * self.members + i for i in range(self.members)]

    def _new_model(self) -> MLP | Ensemble:
        sp = self._space()
        nets = []
        for s in self._member_seeds():
            with torch.random.fork_rng(devices=[]):  # seeded initialisation; the caller's global RNG is left as it was
                torch.manual_seed(s)
                nets.append(MLP(sp.arch_width, sp.bits_width, self.variant, self.hidden, self.depth))
        return nets[0] if self.members == 1 else Ensemble(nets)

    def _nets(self) -> list[MLP]:
        assert self.model_ is not None
        return list(self.model_.nets) if isinstance(self.model_, Ensemble) else [self.model_]  # type: ignore[arg-type]

    @classmethod
    def param_names(cls) -> list[str]:
        """Constructor parameters, read from the signature (as scikit-learn does)."""
        return [n for n in inspect.signature(cls.__init__).parameters if n != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.param_names()}

    def set_params(self, **params: Any) -> AccuracyPredictor:
        unknown = sorted(set(params) - set(self.param_names()))
        if unknown:
            raise ConfigError(f"AccuracyPredictor has no parameter(s) {unknown}; it takes {self.param_names()}")
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def init_weights(self) -> AccuracyPredictor:
        """Build the network with seeded random weights (an untrained predictor of the right shape:
        for timing searches, or before loading weights)."""
        self.model_ = self._new_model()
        return self

    # ------------------------------------------------------------------ training
    def fit(self, X: np.ndarray, y: np.ndarray, warm_start: bool = False) -> AccuracyPredictor:
        """Adam + MSE with early stopping on a held-out ``val_fraction`` of (X, y); keeps the best epoch.
        Each ensemble member draws its own validation split and batch order from its own seed."""
        x = self._input(X)
        t = torch.as_tensor(np.asarray(y, dtype=np.float32))
        if t.shape != (x.shape[0],):
            raise PredictorError(f"y must have shape ({x.shape[0]},), got {tuple(t.shape)}")
        if not torch.all((t >= 0) & (t <= 1)):
            raise PredictorError("accuracies must be fractions in [0, 1]")
        spread, saturated = float(t.max() - t.min()), float((t >= 0.999).float().mean())
        if spread < 1e-3 or saturated > 0.5:
            warnings.warn(
                f"the measured accuracies barely differ (range {100 * spread:.2f} points, {100 * saturated:.0f}% at "
                "100%): the predictor cannot learn a ranking from them and ranking metrics are undefined; measure "
                "on more images, a harder split, or a task that is not solved already",
                UserWarning,
                stacklevel=2,
            )
        if not warm_start or self.model_ is None:
            self.model_ = self._new_model()
            with torch.no_grad():
                for net in self._nets():
                    net.regressor.bias.fill_(float(t.mean()))
        tag = [f" {i + 1}/{self.members}" if self.members > 1 else "" for i in range(self.members)]
        desc = [f"fit {self.variant}{m}" for m in tag]
        device = devices.resolve(self.device)
        x, t = x.to(device), t.to(device)
        self.reports_ = []
        for net, seed, d in zip(self._nets(), self._member_seeds(), desc, strict=True):
            self.reports_.append(self._fit_net(net.to(device), x, t, seed, d))
            net.cpu()  # searches predict on the CPU
        per_member = [{k: v for k, v in asdict(r).items() if k != "history"} for r in self.reports_]
        self._meta()["fit"] = {"n": len(t), "members": per_member}
        if x.shape[1] == self._space().encoding_width:  # networks with their bits: where it has seen data
            self._meta()["training_range"] = training_range(self._space(), np.asarray(X))
        return self

    def extrapolation(self, genes: np.ndarray) -> np.ndarray:
        """Per row, how far the network lies outside the data this predictor was fitted on: the largest
        excess of one of the space's summary features (depth, mean kernel and width, mean bits, share of
        lowest-bit layers) beyond the range the training networks spanned, in units of that range (0:
        inside). The cheapest fmnist network lies 0.58 ranges outside (its activations all 4-bit) and was
        predicted 10.7 points too high; no held-out network lies more than 0.03 outside. All 0 when the
        predictor records no range (fitted on architectures only, or saved before ranges existed)."""
        genes = np.asarray(genes)
        rng = self.metadata_.get("training_range")
        out = np.zeros(len(genes))
        if not rng:
            return out
        for name, values in self._space().summary(genes).items():
            if name in rng and not name.startswith("s"):  # per-stage bits: too coarse alone (4 or 8 at the ends)
                lo, hi = rng[name]
                out = np.maximum(out, np.maximum(lo - values, values - hi) / max(hi - lo, 1e-9))
        return out

    def _fit_net(self, model: MLP, x: torch.Tensor, t: torch.Tensor, seed: int, desc: str) -> FitReport:
        gen = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(t), generator=gen)
        n_val = round(len(t) * self.val_fraction) if len(t) >= 10 else 0
        val, tr = perm[:n_val], perm[n_val:]
        opt = torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        best, best_state, best_epoch, bad = float("inf"), copy.deepcopy(model.state_dict()), 0, 0
        history = []
        bar = tqdm(range(self.max_epochs), desc=desc, disable=not self.progress, leave=False)
        for epoch in bar:
            model.train()
            order = tr[torch.randperm(len(tr), generator=gen)]
            for i in range(0, len(order), self.batch_size):
                b = order[i : i + self.batch_size]
                loss = ((model(x[b]) - t[b]) ** 2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                idx = val if n_val else tr
                score = float(((model(x[idx]) - t[idx]) ** 2).mean())
            history.append(score)
            bar.set_postfix(val_mse=f"{score:.2e}")
            if score < best - 1e-9:
                best, best_state, best_epoch, bad = score, copy.deepcopy(model.state_dict()), epoch, 0
            else:
                bad += 1
                if bad >= self.patience:
                    break
        model.load_state_dict(best_state)
        with torch.no_grad():
            train_mse = float(((model(x[tr]) - t[tr]) ** 2).mean())
        return FitReport(len(history), best_epoch, train_mse, best, history)

    @classmethod
    def transfer(
        cls, fp: AccuracyPredictor, X: np.ndarray, y: np.ndarray, variant: Variant = "branch", **params: Any
    ) -> AccuracyPredictor:
        """APQ's predictor transfer: a quantization-aware predictor that starts from ``fp``'s trunk and
        regressor and is fine-tuned on (architecture + policy, quantized accuracy) pairs."""
        if fp.model_ is None or fp.variant != "fp":
            raise PredictorError("transfer needs a fitted full-precision ('fp') predictor")
        if variant == "fp":
            raise PredictorError("transfer builds a quantization-aware predictor: variant 'branch' or 'wide'")
        q = cls(
            space=fp.space,
            variant=variant,
            **{**{k: v for k, v in fp.get_params().items() if k not in ("space", "variant")}, **params},
        )
        if q.members != fp.members:
            raise PredictorError(f"transfer keeps the fp predictor's {fp.members} member(s); got members={q.members}")
        q.model_ = q._new_model()
        src = fp.model_.state_dict()
        with torch.no_grad():
            dst = q.model_.state_dict()
            for k, v in src.items():
                if k.endswith("layers.0.0.weight") and variant == "wide":
                    dst[k].zero_()
                    dst[k][:, : v.shape[1]] = v
                else:
                    dst[k].copy_(v)
            if variant == "branch":
                for k in dst:
                    if "quantize_fc." in k:
                        dst[k].zero_()  # starts as the fp predictor exactly
            q.model_.load_state_dict(dst)
        q._meta()["transferred_from"] = fp.metadata_.get("fit", {})
        return q.fit(X, y, warm_start=True)

    # ------------------------------------------------------------------ inference
    def predict(
        self, X: np.ndarray, return_std: bool = False, batch: int = 65536
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Predicted accuracy; with ``return_std`` (scikit-learn's convention) also its standard deviation:
        the ensemble members' spread times the calibrated scale (:meth:`calibrate`), so that
        ``mean ± z * std`` covers as a normal interval claims on data the predictor was not fitted on."""
        return self._summarise(self.predict_members(X, batch), return_std)

    def _summarise(self, members: np.ndarray, return_std: bool) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The members' mean, and with ``return_std`` their calibrated spread (an ensemble's only)."""
        mean = members.mean(0)
        if not return_std:
            return mean
        if len(members) < 2:
            raise PredictorError("return_std needs an ensemble (members >= 2): one network has no spread")
        return mean, members.std(0, ddof=1) * self.std_scale_

    @property
    def std_scale_(self) -> float:
        """The calibrated scale of the members' spread (1.0 until :meth:`calibrate` has run)."""
        return float(self.metadata_.get("calibration", {}).get("std_scale", 1.0))

    def calibrate(self, X: np.ndarray, y: np.ndarray, coverage: float = 0.8) -> AccuracyPredictor:
        """Fit the one scale of the members' spread on held-out (X, y): the smallest s such that the central
        ``coverage`` interval ``mean ± z * s * spread`` holds that share of them. Why one scale: members of
        a deep ensemble agree more than they are right (their spread is too narrow far from the data), and
        one factor fitted on data no member saw is the cheapest honest correction."""
        from scipy.stats import norm

        if not 0 < coverage < 1:
            raise PredictorError(f"coverage must be in (0, 1), got {coverage}")
        members = self.predict_members(X)
        if len(members) < 2:
            raise PredictorError("calibrate needs an ensemble (members >= 2): one network has no spread")
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (members.shape[1],) or len(y) < 10:
            raise PredictorError(f"calibrate needs y of shape ({members.shape[1]},) with >= 10 rows, got {y.shape}")
        spread = np.maximum(members.std(0, ddof=1), 1e-12)
        ratio = np.abs(y - members.mean(0)) / (norm.ppf(0.5 + coverage / 2) * spread)
        scale = float(np.quantile(ratio, coverage, method="higher"))
        self._meta()["calibration"] = {"std_scale": scale, "n": len(y), "coverage": coverage}
        return self

    def predict_members(self, X: np.ndarray, batch: int = 65536) -> np.ndarray:
        """(members, N): each ensemble member's prediction (``predict`` is their mean); their spread
        is a cheap uncertainty. Batched so that 100k candidates do not need 100k-row activations."""
        if self.model_ is None:
            raise PredictorError("predictor is not fitted")
        x = self._input(X)
        nets = [net.eval() for net in self._nets()]
        with torch.no_grad():
            return np.stack(
                [
                    np.concatenate(
                        [net(x[i : i + batch]).numpy() for i in range(0, len(x), batch)]
                        or [np.zeros(0, dtype=np.float32)]
                    )
                    for net in nets
                ]
            )

    def predict_genes(self, genes: np.ndarray, return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Predict from a gene matrix (encodes with the candidates' own bits); ``return_std`` as in :meth:`predict`.
        Reads where each encoding's ones are (:meth:`MLP.forward_hot`), not the dense rows: what searches call."""
        return self._summarise(self._members_hot(genes), return_std)

    def _members_hot(self, genes: np.ndarray, batch: int = 65536) -> np.ndarray:
        """(members, N) predictions of gene rows through the one-hot path."""
        if self.model_ is None:
            raise PredictorError("predictor is not fitted")
        sp = self._space()
        genes = sp.validate_matrix(genes)
        nets = self._nets()
        out = np.zeros((len(nets), len(genes)), dtype=np.float32)
        with torch.inference_mode():
            for i in range(0, len(genes), batch):
                arch, bits, active = sp.encode_hot(genes[i : i + batch], bits=self.variant != "fp")
                starts = torch.as_tensor(np.r_[0, np.cumsum(active)[:-1]])
                a, b = torch.as_tensor(arch), torch.as_tensor(bits)
                for m, net in enumerate(nets):
                    out[m, i : i + batch] = net.forward_hot(a, 2 * starts, b, 4 * starts).numpy()
        return out

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """Pairwise ranking accuracy on (X, y): the share of pairs ordered as measured -- what a search
        needs from a predictor, and the figure APQ reports (scikit-learn's ``score``: a float, higher is better)."""
        return float(self.report(X, y)["pairwise_accuracy"])

    def report(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Every ranking and error metric on (X, y): pairwise accuracy, Kendall tau, Spearman, MAE, RMSE..."""
        return ranking_report(np.asarray(y), self.predict(X))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str], metrics: dict[str, Any] | None = None) -> Path:
        """``path`` (state dict, .pt) plus ``path.json`` (space, input layout, settings, metrics)."""
        if self.model_ is None:
            raise PredictorError("predictor is not fitted")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sp = self._space()
        meta = {
            "format": "apqopt-predictor v1",
            "params": {
                **{k: v for k, v in self.get_params().items() if k not in RUN_ONLY},
                "space": sp.name,
            },
            **carried(sp),
            "input": {
                "arch_width": sp.arch_width,
                "bits_width": sp.bits_width,
                "encoding_width": sp.encoding_width,
                "layout": "kernel one-hots, middle one-hots, bits pw_w/pw_a/dw_w/dw_a",
            },
            **self.metadata_,
            "metrics": metrics or self.metadata_.get("metrics", {}),
            "report": [asdict(r) | {"history": r.history[-5:]} for r in self.reports_],
        }
        from apqopt.fileio import atomic_save, atomic_write

        state = self.model_.state_dict()  # type: ignore[union-attr]
        meta["sha256"] = tensor_digest(state)  # checked on load: torch.load checks no CRC
        atomic_save(path, lambda fh: torch.save(state, fh))
        atomic_write(str(path) + ".json", json.dumps(meta, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], space: str | None = None) -> AccuracyPredictor:
        """Load a saved predictor; ``space`` (if given) must match the one it was trained for."""
        path = Path(path)
        meta_path = Path(str(path) + ".json")
        if path.suffix.lower() in (".csv", ".jsonl", ".json") and path.is_file():
            raise PredictorError(
                f"{path} is a data file, not a predictor: train one with `apqopt predictor train` (a predictor is "
                "a .pt weights file with a .pt.json description beside it)"
            )
        if not path.exists() or not meta_path.exists():
            missing = " and ".join(str(p) for p in (path, meta_path) if not p.exists())
            raise PredictorError(f"predictor file(s) not found: {missing} (a .pt file and its .pt.json description)")
        from apqopt.fileio import read_text

        try:
            meta = json.loads(read_text(meta_path, "an apqopt predictor description"))
            params = meta["params"]
            if not isinstance(params, dict) or set(params) - set(cls.param_names()) or "space" not in params:
                raise KeyError(f"'params' must hold {cls.param_names()}, got {params!r}")
        except (json.JSONDecodeError, KeyError, TypeError, ConfigError) as exc:
            raise PredictorError(f"{meta_path} is not an apqopt predictor description: {exc}") from exc
        adopt(meta, str(meta_path))
        if space is not None and params["space"] != get_space(space).name:
            raise PredictorError(f"{path} was trained for space '{params['space']}', not '{space}'")
        try:
            pred = cls(**params)
            pred._space()
        except (TypeError, ApqoptError) as exc:
            raise PredictorError(f"{meta_path}: its 'params' do not describe a predictor: {exc}") from exc
        pred.model_ = pred._new_model()
        try:
            state = torch.load(path, weights_only=True)
            if not isinstance(state, dict):
                raise TypeError(f"holds a {type(state).__name__}, not a state dict")
        except Exception as exc:  # torch raises many types for damaged files
            raise PredictorError(
                f"{path} is not a readable predictor state dict (truncated or corrupted?): {first_line(exc)}"
            ) from exc
        try:
            check_weights(state, str(path), meta.get("sha256"))
        except WeightsError as exc:
            raise PredictorError(str(exc)) from None
        try:
            pred.model_.load_state_dict(state)
        except Exception as exc:
            raise PredictorError(f"{path} does not fit the predictor its description names: {first_line(exc)}") from exc
        skip = ("params", "format", "input", "report", "sha256")
        pred.metadata_ = {k: v for k, v in meta.items() if k not in skip}
        return pred

    @classmethod
    def from_apq_checkpoint(
        cls, state_dict: dict[str, torch.Tensor] | str | os.PathLike[str], space: str = "apq-mbv2"
    ) -> AccuracyPredictor:
        """Load APQ's released ``acc.pt`` (fp) or ``acc_quant.pt`` (with ``quantize_fc``) for a space."""
        sd = state_dict
        if not isinstance(sd, dict):
            if not Path(sd).is_file():
                raise PredictorError(
                    f"APQ checkpoint not found: {sd} (acc.pt / acc_quant.pt come with APQ's released models, "
                    "from its repository; apqopt does not download them)"
                )
            try:
                sd = torch.load(sd, map_location="cpu", weights_only=True)
            except Exception as exc:  # torch raises many types for damaged files
                raise PredictorError(
                    f"{state_dict} is not a readable checkpoint (truncated or corrupted?): {first_line(exc)}"
                ) from exc
        variant: Variant = "branch" if "quantize_fc.weight" in sd else "fp"
        first = sd.get("layers.0.0.weight")
        if first is None:
            raise PredictorError(f"not an APQ predictor checkpoint: keys {sorted(sd)[:6]}")
        pred = cls(
            space=space,
            variant=variant,
            hidden=first.shape[0],
            depth=len({k.split(".")[1] for k in sd if k.startswith("layers.")}),
        )
        sp = pred._space()
        if first.shape[1] != sp.arch_width:
            raise PredictorError(
                f"checkpoint's first layer reads {first.shape[1]} features; space '{sp.name}' has {sp.arch_width}"
            )
        pred.model_ = pred._new_model()
        pred.model_.load_state_dict(sd)
        pred._meta()["source"] = "APQ checkpoint"
        return pred
