"""HAQ (Wang et al., CVPR 2019): a DDPG agent chooses each layer's weight and activation bits for a
fixed architecture, with the hardware budget enforced after every episode.

The agent walks the decisions of the architecture in order -- per block: pointwise weights,
pointwise activations, depthwise weights, depthwise activations -- observing HAQ's 10 features
(index, C_in, C_out, kernel, stride, feature size, #params, depthwise flag, weight/activation flag,
previous action; min-max normalised). An action in [0, 1] maps to a bit choice. After the episode,
while the policy breaks a constraint, bits are lowered one step at a time from the last decision
backwards (HAQ's budget enforcement). One episode = one evaluated candidate. The reward is HAQ's
``0.1 x (accuracy - full-precision accuracy)`` with the 8-bit policy's predicted accuracy as the
reference, given to every transition of the episode, minus a moving-average baseline.

Defaults are HAQ's: actor/critic 300-300, replay buffer 2000, batch 64, actor lr 1e-4, critic lr 1e-3,
soft target updates tau 0.01, 20 warm-up episodes of random actions, truncated-normal exploration
noise with sigma 0.5 decaying by 0.99 per episode after the warm-up.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from apqopt.errors import ConfigError
from apqopt.search.base import Run, Searcher
from apqopt.search.problem import Problem
from apqopt.space import BIT_FIELDS

N_FEATURES = 10


def _mlp(n_in: int, n_out: int, hidden: int, out: nn.Module | None = None) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Linear(n_in, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, n_out),
    ]
    if out is not None:
        layers.append(out)
    return nn.Sequential(*layers)


def observations(problem: Problem) -> tuple[np.ndarray, list[int]]:
    """HAQ's per-decision features (normalised) and the gene column each decision sets."""
    sp = problem.space
    arch = problem.architecture
    if arch is None:
        raise ConfigError("HAQ searches the bits of one architecture: use problem.restricted_to(candidate)")
    feats: list[list[float]] = []
    cols: list[int] = []
    for b, blk in sp.active_blocks(arch):
        exp, dw, _ = sp.block_layers(b, blk.kernel, blk.middle, (8, 8), (8, 8))
        for f in BIT_FIELDS:
            layer = dw if f.startswith("dw") else exp
            params = layer.c_out * (layer.c_in // layer.groups) * layer.kernel**2
            feats.append(
                [
                    len(feats),
                    layer.c_in,
                    layer.c_out,
                    layer.kernel,
                    layer.stride,
                    layer.h_in,
                    params,
                    float(f.startswith("dw")),
                    float(f.endswith("_w")),
                    0.0,
                ]
            )
            cols.append(sp.block_gene(b, f))
    obs = np.array(feats, dtype=np.float64)
    span = obs.max(0) - obs.min(0)
    obs = (obs - obs.min(0)) / np.where(span > 0, span, 1)
    return obs.astype(np.float32), cols


class HAQ(Searcher):
    name = "haq"
    summary = "HAQ's DDPG agent picks each layer's bits for one fixed architecture (--architecture)"
    stall_after = 200  # episodes in a row that repeat known policies (each episode trains the agent: costly)

    def __init__(
        self,
        seed: int = 0,
        hidden: int = 300,
        buffer: int = 2000,
        batch: int = 64,
        lr_actor: float = 1e-4,
        lr_critic: float = 1e-3,
        tau: float = 0.01,
        warmup: int = 20,
        sigma: float = 0.5,
        sigma_decay: float = 0.99,
        discount: float = 1.0,
        updates_per_episode: int | None = None,
    ) -> None:
        super().__init__(seed)
        self.hidden, self.buffer, self.batch, self.lr_actor, self.lr_critic = hidden, buffer, batch, lr_actor, lr_critic
        self.tau, self.warmup, self.sigma, self.sigma_decay, self.discount = tau, warmup, sigma, sigma_decay, discount
        self.updates_per_episode = updates_per_episode

    def _enforce(self, problem: Problem, row: np.ndarray, cols: list[int]) -> np.ndarray:
        """Lower bits one step at a time from the last decision backwards until the budget fits."""
        row = row.copy()
        while problem.cost(row[None])[2][0] > 0:
            lowered = False
            for c in reversed(cols):
                if row[c] > 0:
                    row[c] -= 1
                    lowered = True
                    if problem.cost(row[None])[2][0] <= 0:
                        return row
            if not lowered:
                break  # every decision already at the lowest bits
        return row

    def _search(self, run: Run, progress: bool) -> dict[str, Any]:
        with torch.random.fork_rng(devices=[]):  # seeded networks without touching the caller's global RNG
            torch.manual_seed(self.seed)
            return self._episodes(run, progress)

    def _episodes(self, run: Run, progress: bool) -> dict[str, Any]:
        problem = run.problem
        rng = np.random.default_rng(self.seed)
        obs, cols = observations(problem)
        n_steps, n_bits = len(cols), len(problem.space.bits)
        base_row = np.where(problem.fixed >= 0, problem.fixed, n_bits - 1)
        ref_acc = float(problem.predict(base_row[None])[0])  # the 8-bit policy as "full precision"
        actor = _mlp(N_FEATURES, 1, self.hidden, nn.Sigmoid())
        critic = _mlp(N_FEATURES + 1, 1, self.hidden)
        actor_t, critic_t = _mlp(N_FEATURES, 1, self.hidden, nn.Sigmoid()), _mlp(N_FEATURES + 1, 1, self.hidden)
        actor_t.load_state_dict(actor.state_dict())
        critic_t.load_state_dict(critic.state_dict())
        opt_a = torch.optim.Adam(actor.parameters(), lr=self.lr_actor)
        opt_c = torch.optim.Adam(critic.parameters(), lr=self.lr_critic)
        mem_s = np.zeros((self.buffer, N_FEATURES), np.float32)
        mem_a = np.zeros((self.buffer, 1), np.float32)
        mem_r = np.zeros((self.buffer, 1), np.float32)
        mem_s2 = np.zeros((self.buffer, N_FEATURES), np.float32)
        mem_done = np.zeros((self.buffer, 1), np.float32)
        filled, ptr = 0, 0
        sigma, baseline = self.sigma, None
        best_reward, episode = -np.inf, 0
        episode_acc: list[float] = []  # per episode, repeats of known policies included (they are free)
        while not run.done:
            states, actions, prev = [], [], 0.0
            row = base_row.copy()
            for t in range(n_steps):
                s = obs[t].copy()
                s[-1] = prev
                if episode < self.warmup:
                    a = float(rng.random())
                else:
                    with torch.no_grad():
                        a = float(actor(torch.from_numpy(s)[None])[0, 0])
                    a = float(np.clip(_truncnorm(rng, a, sigma), 0, 1))
                row[cols[t]] = min(int(a * n_bits), n_bits - 1)
                states.append(s)
                actions.append(a)
                prev = a
            row = self._enforce(problem, row, cols)
            ev = run.evaluate(row[None])
            reward = 0.1 * (float(ev.accuracy[0]) - ref_acc)
            best_reward = max(best_reward, reward)
            episode_acc.append(float(ev.accuracy[0]))
            baseline = reward if baseline is None else 0.95 * baseline + 0.05 * reward
            for t in range(n_steps):
                mem_s[ptr], mem_a[ptr, 0], mem_r[ptr, 0] = states[t], actions[t], reward - baseline
                mem_s2[ptr] = states[t + 1] if t + 1 < n_steps else states[t]
                mem_done[ptr, 0] = float(t == n_steps - 1)
                ptr, filled = (ptr + 1) % self.buffer, min(filled + 1, self.buffer)
            if episode >= self.warmup:
                sigma *= self.sigma_decay
                for _ in range(self.updates_per_episode or n_steps):
                    idx = rng.integers(0, filled, self.batch)
                    s_b, a_b, r_b = (torch.from_numpy(m[idx]) for m in (mem_s, mem_a, mem_r))
                    s2_b, d_b = torch.from_numpy(mem_s2[idx]), torch.from_numpy(mem_done[idx])
                    with torch.no_grad():
                        q_next = critic_t(torch.cat([s2_b, actor_t(s2_b)], 1))
                        target = r_b + self.discount * (1 - d_b) * q_next
                    loss_c = ((critic(torch.cat([s_b, a_b], 1)) - target) ** 2).mean()
                    opt_c.zero_grad()
                    loss_c.backward()
                    opt_c.step()
                    loss_a = -critic(torch.cat([s_b, actor(s_b)], 1)).mean()
                    opt_a.zero_grad()
                    loss_a.backward()
                    opt_a.step()
                    with torch.no_grad():
                        for net, tgt in ((actor, actor_t), (critic, critic_t)):
                            for p, pt in zip(net.parameters(), tgt.parameters()):
                                pt.mul_(1 - self.tau).add_(self.tau * p)
            episode += 1
        return {
            "episodes": episode,
            "reference_accuracy": ref_acc,
            "best_reward": best_reward,
            "final_sigma": sigma,
            "episode_accuracy": episode_acc,
        }


def _truncnorm(rng: np.random.Generator, mean: float, sigma: float) -> float:
    """A sample of N(mean, sigma) truncated to [0, 1] (rejection; clipped after 20 tries)."""
    for _ in range(20):
        x = rng.normal(mean, sigma)
        if 0.0 <= x <= 1.0:
            return float(x)
    return float(np.clip(mean, 0, 1))
