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

The actor and critic are two-hidden-layer ReLU networks written in NumPy (forward, backward, Adam):
at these sizes (10 inputs, 300 units, batches of 64) NumPy is as quick as torch, and ``search/`` stays
free of torch (searchers know problems, not networks).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from apqopt.errors import ConfigError
from apqopt.search.base import Run, Searcher
from apqopt.search.problem import Problem
from apqopt.space import BIT_FIELDS

N_FEATURES = 10


class _MLP:
    """in -> ReLU(hidden) -> ReLU(hidden) -> out (sigmoid optional), float32, with its gradient. Initialised
    as torch's ``nn.Linear`` is (weights and biases uniform in +-1/sqrt(fan_in))."""

    def __init__(self, n_in: int, n_out: int, hidden: int, rng: np.random.Generator, sigmoid: bool = False) -> None:
        sizes = [(n_in, hidden), (hidden, hidden), (hidden, n_out)]
        self.params: list[np.ndarray] = []
        for fan_in, fan_out in sizes:
            bound = 1.0 / np.sqrt(fan_in)
            self.params.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32))
            self.params.append(rng.uniform(-bound, bound, fan_out).astype(np.float32))
        self.sigmoid = sigmoid

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        w1, b1, w2, b2, w3, b3 = self.params
        h1 = np.maximum(x @ w1 + b1, 0)
        h2 = np.maximum(h1 @ w2 + b2, 0)
        out = h2 @ w3 + b3
        if self.sigmoid:
            out = 1.0 / (1.0 + np.exp(-out))
        return out, [x, h1, h2, out]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)[0]

    def backward(self, cache: list[np.ndarray], grad: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Gradients of the parameters and of the input, given d(loss)/d(output)."""
        x, h1, h2, out = cache
        _, _, w2, _, w3, _ = self.params
        if self.sigmoid:
            grad = grad * out * (1 - out)
        g3 = h2.T @ grad
        d2 = (grad @ w3.T) * (h2 > 0)
        g2 = h1.T @ d2
        d1 = (d2 @ w2.T) * (h1 > 0)
        g1 = x.T @ d1
        return [g1, d1.sum(0), g2, d2.sum(0), g3, grad.sum(0)], d1 @ self.params[0].T

    def copy(self) -> _MLP:
        twin = object.__new__(_MLP)
        twin.params, twin.sigmoid = [p.copy() for p in self.params], self.sigmoid
        return twin

    def soft_update(self, source: _MLP, tau: float) -> None:
        for p, q in zip(self.params, source.params):
            p *= 1 - tau
            p += tau * q


class _Adam:
    """Adam (Kingma & Ba; torch's defaults: betas 0.9/0.999, eps 1e-8) over a network's parameters."""

    def __init__(self, net: _MLP, lr: float) -> None:
        self.net, self.lr, self.t = net, lr, 0
        self.m = [np.zeros_like(p) for p in net.params]
        self.v = [np.zeros_like(p) for p in net.params]

    def step(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        c1, c2 = 1 - 0.9**self.t, 1 - 0.999**self.t
        for p, g, m, v in zip(self.net.params, grads, self.m, self.v):
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g * g
            p -= (self.lr * (m / c1) / (np.sqrt(v / c2) + 1e-8)).astype(np.float32)


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
        return self._episodes(run, progress)

    def _episodes(self, run: Run, progress: bool) -> dict[str, Any]:
        problem = run.problem
        rng = np.random.default_rng(self.seed)
        obs, cols = observations(problem)
        n_steps, n_bits = len(cols), len(problem.space.bits)
        base_row = np.where(problem.fixed >= 0, problem.fixed, n_bits - 1)
        ref_acc = float(problem.predict(base_row[None])[0])  # the 8-bit policy as "full precision"
        init = np.random.default_rng([self.seed, 1])  # the networks' own stream: exploration's stays as it was
        actor = _MLP(N_FEATURES, 1, self.hidden, init, sigmoid=True)
        critic = _MLP(N_FEATURES + 1, 1, self.hidden, init)
        actor_t, critic_t = actor.copy(), critic.copy()
        opt_a, opt_c = _Adam(actor, self.lr_actor), _Adam(critic, self.lr_critic)
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
                    a = float(actor(s[None])[0, 0])
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
                    s_b, a_b, r_b, s2_b, d_b = (m[idx] for m in (mem_s, mem_a, mem_r, mem_s2, mem_done))
                    q_next = critic_t(np.concatenate([s2_b, actor_t(s2_b)], 1))
                    target = r_b + self.discount * (1 - d_b) * q_next
                    q, cache = critic.forward(np.concatenate([s_b, a_b], 1))
                    grads, _ = critic.backward(cache, 2 * (q - target) / len(q))  # mean squared error
                    opt_c.step(grads)
                    # the actor climbs the (updated) critic: d(-mean Q(s, actor(s))) through the critic's action input
                    act, cache_a = actor.forward(s_b)
                    _, cache_c = critic.forward(np.concatenate([s_b, act], 1))
                    _, d_input = critic.backward(cache_c, np.full((len(s_b), 1), -1.0 / len(s_b), np.float32))
                    grads, _ = actor.backward(cache_a, d_input[:, -1:])
                    opt_a.step(grads)
                    actor_t.soft_update(actor, self.tau)
                    critic_t.soft_update(critic, self.tau)
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
