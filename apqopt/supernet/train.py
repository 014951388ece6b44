"""Progressive-shrinking training of the supernet, with in-place distillation; resumable.

Why these choices: once-for-all trains the largest network first, then lets kernel, depth and width
shrink in turn, so small subnets inherit good weights instead of fighting the large ones. Each step
follows the sandwich rule (BigNAS): the largest subnet learns from the labels and, in the same step,
the phase's smallest subnet and ``n_random`` random subnets learn from the largest one's predictions
(in-place distillation). Sampling random mid-sized subnets every step is what makes accuracy track
capacity across the whole space, which is the signal the predictor needs.

Everything is checkpointed atomically every ``ckpt_every`` steps (weights, optimiser, position in
the schedule, RNG states): kill the process and rerun the same command, it continues.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from apqopt import devices
from apqopt.errors import ConfigError, first_line
from apqopt.space import Candidate, SearchSpace, adopt, carried, get_space
from apqopt.supernet import ddp
from apqopt.supernet.data import Split, is_file_safe_data, load_split
from apqopt.supernet.evaluate import evaluate_subnet
from apqopt.supernet.network import Supernet
from apqopt.weights import check_weights, tensor_digest


@dataclass(frozen=True)
class Phase:
    """One stage of progressive shrinking: which dimensions are elastic, for how long, at which lr."""

    name: str
    epochs: float
    lr: float
    elastic: tuple[str, ...]  # subset of ("kernel", "depth", "width")
    n_random: int = 1


DEFAULT_PHASES: tuple[Phase, ...] = (
    Phase("largest", 5, 0.1, ()),
    Phase("kernel", 1.5, 0.03, ("kernel",), 1),
    Phase("depth", 1.5, 0.03, ("kernel", "depth"), 1),
    Phase("width", 3, 0.03, ("kernel", "depth", "width"), 2),
    Phase("refine", 6, 0.03, ("kernel", "depth", "width"), 2),
)


@dataclass(frozen=True)
class TrainConfig:
    space: str = "fmnist"
    phases: tuple[Phase, ...] = DEFAULT_PHASES
    batch_size: int = 256
    weight_decay: float = 4e-5
    momentum: float = 0.9
    seed: int = 0
    train_images: int | None = None  # None = the whole training split (tests use a slice)
    ckpt_every: int = 25
    eval_images: int = 2000  # val images for the end-of-phase report
    data: str = "fmnist"  # fmnist | imagefolder:DIR | module:function (apqopt.supernet.data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainState:
    phase: int = 0
    step: int = 0  # step within the phase
    losses: list[float] = field(default_factory=list)  # this phase's training loss, step by step
    history: list[dict[str, Any]] = field(default_factory=list)


def phase_steps(cfg: TrainConfig, phase: Phase, n_train: int, processes: int = 1) -> int:
    """Steps of a phase; ``processes`` (torchrun) multiply the batch, so the steps shrink."""
    return max(1, math.ceil(phase.epochs * n_train / (cfg.batch_size * processes)))


def sample_phase(space: SearchSpace, phase: Phase, rng: np.random.Generator, n: int) -> list[Candidate]:
    """n random candidates where only the phase's elastic dimensions vary (others at their maximum)."""
    genes = space.sample(n, rng)
    largest = space.from_candidates([space.uniform()])[0]
    bg = space.block_genes(genes)
    big = space.block_genes(largest[None])[0]
    if "depth" not in phase.elastic:
        genes[:, : space.n_stages] = largest[: space.n_stages]
    if "kernel" not in phase.elastic:
        bg[..., 0] = big[:, 0]
    if "width" not in phase.elastic:
        bg[..., 1] = big[:, 1]
    return space.to_candidates(genes)


def phase_smallest(space: SearchSpace, phase: Phase) -> Candidate:
    depths = [min(s.depths) if "depth" in phase.elastic else s.max_depth for s in space.stages]
    kernel = min(space.kernels) if "kernel" in phase.elastic else max(space.kernels)
    return space.uniform(depths, kernel, 0 if "width" in phase.elastic else -1)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to 2 pixels (4 groups share a shift)."""
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    parts = []
    for chunk in x.chunk(4):
        dy, dx = torch.randint(-2, 3, (2,), generator=gen).tolist()
        parts.append(torch.roll(F.pad(chunk, (2, 2, 2, 2)), (dy, dx), (2, 3))[:, :, 2:-2, 2:-2])
    return torch.cat(parts).contiguous(memory_format=torch.channels_last)


def _save(path: Path, payload: dict[str, Any]) -> None:
    """Publish a weights file atomically, with the checksum of its model's tensors (checked on load)."""
    from apqopt.fileio import atomic_save

    payload = {**payload, "sha256": tensor_digest(payload["model"])}
    atomic_save(path, lambda fh: torch.save(payload, fh))


def _check_resumable(path: Path, stored: dict[str, Any], wanted: dict[str, Any]) -> None:
    """A checkpoint resumes a run with the same settings, or one whose schedule only adds phases at the
    end: a finished supernet can be trained further, and the result is the run a fresh start with the
    longer schedule gives, since the optimiser, RNG states and schedule position come from the checkpoint."""
    stored = {"data": "fmnist", "processes": 1, **stored}  # from before --data: Fashion-MNIST; one process
    wanted = {"processes": 1, **wanted}
    old_phases, new_phases = stored["phases"], wanted["phases"]
    same_rest = {k: v for k, v in stored.items() if k != "phases"} == {k: v for k, v in wanted.items() if k != "phases"}
    if same_rest and list(new_phases[: len(old_phases)]) == list(old_phases):
        return
    what = "settings" if not same_rest else "phases (a schedule may only be extended at its end)"
    raise ConfigError(
        f"{path} was written with other {what}; use another output folder or delete it. "
        f"stored: {json.dumps(stored)[:300]}"
    )


def train_supernet(
    cfg: TrainConfig, out_dir: str | Path, progress: bool = True, log: Any = None, device: str = "cpu"
) -> Supernet:
    """Train (or resume) a supernet; writes ``out_dir/checkpoint.pt`` and ``out_dir/supernet.pt``.
    ``device``: see :mod:`apqopt.devices` (a run may resume on another device).

    Training seeds and checkpoints torch's global RNG (dropout, initialisation) for exact resumes; it
    runs in a fork of that RNG, so the caller's own random state is the same afterwards."""
    with torch.random.fork_rng(devices=[]):
        return _train(cfg, out_dir, progress, log, devices.resolve(device))


def _train(cfg: TrainConfig, out_dir: str | Path, progress: bool, log: Any, device: torch.device) -> Supernet:
    group = ddp.join(device)  # torchrun: one of several processes (apqopt.supernet.ddp); else alone
    try:
        with warnings.catch_warnings():
            if group.world > 1:  # channels_last weights: DDP's buckets keep another layout (speed only)
                warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
            return _train_in(cfg, Path(out_dir), progress and group.lead, log if group.lead else None, group)
    finally:
        ddp.leave(group)


def _train_in(cfg: TrainConfig, out: Path, progress: bool, log: Any, group: ddp.Group) -> Supernet:
    device = group.device
    if group.lead:
        out.mkdir(parents=True, exist_ok=True)
    ddp.barrier(group)
    ckpt_path, final_path = out / "checkpoint.pt", out / "supernet.pt"
    space = get_space(cfg.space)
    torch.manual_seed(cfg.seed)
    net = Supernet(space, cfg.data).to(device, memory_format=torch.channels_last)
    data = load_split("train", cfg.data, space.name)
    if cfg.train_images:
        data = data.subset(cfg.train_images)
    images, labels = devices.host(data.images, device), data.labels
    n_train = len(data)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)
    state = TrainState()
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    settings = cfg.to_dict() | ({"processes": group.world} if group.world > 1 else {})
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=True, map_location="cpu")  # tensors and plain types: no code runs
        check_weights(ck["model"], str(ckpt_path), ck.get("sha256"))
        _check_resumable(ckpt_path, ck["config"], settings)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        state = TrainState(**ck["state"])
        rng.bit_generator.state = ck["numpy_rng"]
        gen.set_state(ck["torch_rng"])
        torch.set_rng_state(ck["torch_global_rng"])
    model = ddp.wrap(net, group)
    batch = cfg.batch_size * group.world  # every process draws the global batch and trains on its slice
    mine = slice(group.rank * cfg.batch_size, (group.rank + 1) * cfg.batch_size)

    def checkpoint() -> None:
        if group.lead:
            _save(
                ckpt_path,
                {
                    "config": settings,
                    "model": net.state_dict(),
                    "optimizer": opt.state_dict(),
                    "state": asdict(state),
                    "numpy_rng": rng.bit_generator.state,
                    "torch_rng": gen.get_state(),
                    "torch_global_rng": torch.get_rng_state(),
                },
            )
        ddp.barrier(group)

    largest = space.uniform()
    finished_before = state.phase == len(cfg.phases) and final_path.exists()
    while state.phase < len(cfg.phases):
        phase = cfg.phases[state.phase]
        total = phase_steps(cfg, phase, n_train, group.world)
        widths_trained = any("width" in p.elastic for p in cfg.phases[: state.phase])
        if state.step == 0 and "width" in phase.elastic and not widths_trained:
            net.sort_channels()  # once: later phases' small subnets were trained on this order
        bar = tqdm(
            total=total,
            initial=state.step,
            desc=f"phase {state.phase + 1}/{len(cfg.phases)} {phase.name}",
            disable=not progress,
            unit="step",
        )
        net.train()
        t0 = time.time()
        while state.step < total:
            lr = 0.5 * phase.lr * (1 + math.cos(math.pi * state.step / total))
            for g in opt.param_groups:
                g["lr"] = lr
            idx = torch.randint(0, n_train, (batch,), generator=gen)
            x = devices.to(augment(images[idx], gen)[mine], device)
            y = devices.to(labels[idx][mine], device)
            opt.zero_grad(set_to_none=True)
            with devices.mixed_precision(device):
                logits = model(x, largest)
                loss = F.cross_entropy(logits, y)
            loss.backward()
            acc = (logits.argmax(1) == y).float().mean().item()
            soft = logits.detach().softmax(1)
            students = []
            if phase.elastic:
                students = [phase_smallest(space, phase), *sample_phase(space, phase, rng, phase.n_random)]
            kd_total = 0.0
            for cand in students:
                with devices.mixed_precision(device):
                    kd = -(soft * model(x, cand).log_softmax(1)).sum(1).mean()
                kd.backward()
                kd_total += kd.item()
            opt.step()
            state.step += 1
            state.losses.append(round(ddp.mean(loss.item(), group), 5))  # the global batch's loss
            bar.update(1)
            bar.set_postfix(
                loss=f"{state.losses[-1]:.3f}",
                acc=f"{acc:.3f}",
                kd=f"{kd_total / max(1, len(students)):.3f}",
                lr=f"{lr:.4f}",
            )
            if state.step % cfg.ckpt_every == 0:
                checkpoint()
        bar.close()
        report = phase_report(net, space, cfg.eval_images) if group.lead else {}
        report.update(phase=phase.name, seconds=round(time.time() - t0, 1), losses=state.losses)
        state.history.append(ddp.share(report, group))
        if log:
            log(json.dumps({k: v for k, v in report.items() if k != "losses"} | {"loss": _mean(state.losses)}))
        state.phase += 1
        state.step = 0
        state.losses = []
        checkpoint()
    if not finished_before and group.lead:  # rewriting would change the file's bytes, hence its identity
        _save(
            final_path,
            {
                "space": space.name,
                **carried(space),
                "config": settings,
                "model": net.state_dict(),
                "history": state.history,
            },
        )
    return net


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def phase_report(net: Supernet, space: SearchSpace, n_images: int) -> dict[str, Any]:
    """Val accuracy of the largest and smallest subnets (BN re-estimated), for the log."""
    val = load_split("val", net.data, space.name)
    val = val.subset(min(n_images, len(val)))
    out = {}
    for name, cand in (("largest", space.uniform()), ("smallest", space.smallest())):
        out[name] = round(evaluate_subnet(net.extract(cand), val, data=net.data, space=space.name), 4)
    return out


def weights_identity(path: str | Path) -> str:
    """``name:sha256-prefix`` of a weights file, written into every dataset header: records measured on
    other weights must never be merged or resumed into (two trainings of one architecture give files
    of the same name and size, so neither can tell them apart)."""
    path = Path(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return f"{path.name}:sha256:{digest[:16]}"


def load_supernet(path: str | Path, data: str | None = None, device: str | None = None) -> Supernet:
    """Load trained weights written by :func:`train_supernet` (``supernet.pt``), or APQ's ImageNet
    supernet in once-for-all's layout (:func:`apqopt.supernet.ofa.load_ofa_supernet`). ``data``: the
    images to measure it on, instead of those it records (an OFA checkpoint records none); ``device``:
    where it runs (:mod:`apqopt.devices`; default the CPU)."""
    from apqopt.supernet.ofa import is_ofa_checkpoint, load_ofa_supernet

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"supernet weights not found: {path}; train with `apqopt supernet train`")
    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")  # no code runs from a file
        if isinstance(payload, dict) and is_ofa_checkpoint(payload):  # APQ's own ImageNet supernet
            ofa = load_ofa_supernet(payload, name=str(path))  # read once: these files are large
            ofa.data = data or ""
            return ofa.to(devices.resolve(device or "cpu"))
        adopt(payload, str(path))  # a user's own space travels inside its weights file
        check_weights(payload["model"], str(path), payload.get("sha256"))
        recorded = payload.get("config", {}).get("data", "fmnist")
        net = Supernet(payload["space"], recorded if isinstance(recorded, str) else "")
        net.load_state_dict(payload["model"])
    except (RuntimeError, KeyError, EOFError, OSError, pickle.UnpicklingError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"{path} is not a readable apqopt supernet file (truncated or corrupted?): {first_line(exc)}"
        ) from exc
    if data is None and not is_file_safe_data(net.data):
        raise ConfigError(
            f"{path} records the data source {net.data!r}; apqopt never imports code a file names: give it "
            f"again each time (--data {net.data}, or load_supernet(path, data=...))"
        )
    net.data = data or net.data
    return net.to(devices.resolve(device or "cpu"), memory_format=torch.channels_last).eval()


__all__ = ["DEFAULT_PHASES", "Phase", "Split", "TrainConfig", "load_supernet", "train_supernet", "weights_identity"]
