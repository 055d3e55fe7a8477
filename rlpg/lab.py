"""The estimator lab: score-function gradient estimates of a tabular softmax policy, measured
against the exact finite-horizon gradient (bias, variance, RMSE, cosine) as the batch grows.

A finite world (`rlpg.envs.FiniteEnv`: random tabular MDP, bandit, cliff walking) is rolled
out for H = `params.max_steps_in_episode` steps from a reset, so each environment's first
episode is a whole episode (`returns.first_episode_mask`); the exact objective of those
episodes is `exact.finite_horizon_expected_return(env.tabular_mdp(), logits, H)`.

The policy is tabular: π(a|s) = softmax(logits[s]) with logits [S, A]. The lab swaps the
env's observations for one-hot state indicators (`tabular_params`), so an observation o_t is
onehot(s_t) and ∇_logits log π(a_t|s_t) = o_t ⊗ (onehot(a_t) − π(·|s_t)). The estimate of one
batch of m episodes is the textbook

    ĝ = 1/m Σ_i Σ_t w_{t,i} ∇_logits log π(a_{t,i}|s_{t,i})       (sum over t, mean over i)

— one einsum (`tabular_estimate`), no autodiff — for the weights w of each `VARIANTS` entry.
Axes: T (= H) time, N batches, M episodes per batch, S states, A actions.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rlpg import distributions, exact, returns
from rlpg.algos import on_policy, reinforce
from rlpg._checks import (
    as_array, check_floating, check_in_interval, check_index, check_integer, check_key, check_min_rank, check_rank,
    check_same_shape, check_shape, check_size,
)
from rlpg.envs.tabular import FiniteEnv, FiniteEnvParams
from rlpg.policies import Policy
from rlpg.rollout import Trajectory, reset, rollout

VARIANTS = ("total", "reward_to_go", "rtg_const_baseline", "rtg_value_baseline", "rtg_learned_baseline", "normalized")
"""Weights w_t: R(τ); G_t; G_t − J (the exact objective, a constant); G_t − V_t(s_t) (the exact
time-indexed value); G_t − V̂_t(s_t) (a value learned by Monte Carlo on the next batch of the
same size, independent of this one, as a baseline fit on earlier data is — but batch n + 1's
own estimate then shares those episodes, so this variant's N estimates are not independent
and its ±3σ band is only approximate); G_t standardized over the batch's steps (biased).
These whole-episode-from-reset estimates are not what training runs: `measure_training_path`
measures the `reinforce.Config` variants themselves."""

UNBIASED = ("total", "reward_to_go", "rtg_const_baseline", "rtg_value_baseline", "rtg_learned_baseline")


# ----------------------------------------------------------------------------- sampling


def tabular_softmax_policy() -> Policy:
    """π(a|s) = softmax(logits[s]) over one-hot observations: apply(logits [S, A], o [..., S]) = o @ logits."""

    def init(key):
        raise NotImplementedError("the lab's tabular policy has no default parameters; pass logits [S, A].")

    return Policy(init=init, apply=lambda logits, obs: obs @ logits, distribution=distributions.categorical)


def tabular_params(env: FiniteEnv, params: FiniteEnvParams | None = None, horizon: int | None = None) -> FiniteEnvParams:
    """The env's parameters with one-hot observations eye(S) (and the time limit `horizon`, if given)."""
    params = env.default_params if params is None else params
    eye = jnp.eye(env.num_states, dtype=params.rewards.dtype)
    params = params.replace(observations=eye)
    if horizon is not None:
        params = params.replace(max_steps_in_episode=check_size("horizon", horizon))
    return params


def sample_episodes(
    key: jax.Array, env: FiniteEnv, params: FiniteEnvParams, logits: jax.Array, num_episodes: int
) -> tuple[Trajectory, jax.Array]:
    """`num_episodes` independent whole episodes of π_logits from reset, H = params.max_steps_in_episode.

    Args:
      key: PRNG key. env: a FiniteEnv. params: from `tabular_params` (one-hot observations).
      logits: [S, A]. num_episodes: B (static).
    Returns:
      (Trajectory [H, B, ...], mask [H, B] — 1 on the steps of each env's first episode).
    """
    check_key("key", key)
    num_episodes = check_size("num_episodes", num_episodes)
    check_shape("logits", logits, (env.num_states, env.num_actions), "[S, A] of the env")
    horizon = int(params.max_steps_in_episode)
    reset_key, run_key = jax.random.split(key)
    batch = reset(reset_key, env, params, num_episodes)
    _, traj = rollout(run_key, tabular_softmax_policy(), logits, env, params, batch, horizon)
    return traj, returns.first_episode_mask(traj.done)


# ----------------------------------------------------------------------------- weights and estimates


def monte_carlo_values(traj: Trajectory, mask: jax.Array) -> jax.Array:
    """V̂_t(s) = mean of the reward-to-go G_t over the masked visits of s at time t (0 if none).

    Args:
      traj: Trajectory [T, M, ...] (one-hot obs [T, M, S]). mask: [T, M].
    Returns:
      [T, S] the tabular Monte Carlo value estimate.
    """
    check_same_shape(reward=traj.reward, mask=mask)
    rtg = returns.reward_to_go(traj.reward, traj.done, 1.0)
    visits = jnp.einsum("tm,tms->ts", mask, traj.obs)
    totals = jnp.einsum("tm,tms->ts", mask * rtg, traj.obs)
    return totals / jnp.maximum(visits, 1.0)


def variant_weights(
    traj: Trajectory,
    mask: jax.Array,
    values: jax.Array,
    constant_baseline: jax.Array | float,
    learned_values: jax.Array,
) -> dict[str, jax.Array]:
    """The per-step weights w_t of every variant, over whatever batch axes traj has.

    Args:
      traj: Trajectory [T, ...] of `sample_episodes` (one-hot obs [T, ..., S]).
      mask: [T, ...] first-episode mask.
      values: [T + 1, S] time-indexed exact values (`exact.finite_horizon_values`).
      constant_baseline: scalar b of "rtg_const_baseline".
      learned_values: [T, S] the baseline V̂ of "rtg_learned_baseline", fit on other episodes.
    Returns:
      {variant: [T, ...]}; "normalized" standardizes over ALL entries of the given mask, so
      call this per batch (e.g. under vmap) for a per-batch normalization.
    """
    check_same_shape(reward=traj.reward, mask=mask)
    T = traj.reward.shape[0]
    check_shape("values", values, (T + 1, traj.obs.shape[-1]), "[T + 1, S]")
    dones = traj.done
    rtg = returns.reward_to_go(traj.reward, dones, 1.0)
    check_shape("learned_values", learned_values, (T, traj.obs.shape[-1]), "[T, S]")
    v_t = jnp.einsum("t...s,ts->t...", traj.obs, values[:T])  # V_t(s_t), obs = onehot(s_t)
    v_hat = jnp.einsum("t...s,ts->t...", traj.obs, learned_values)
    return {
        "total": returns.total_return(traj.reward, dones, 1.0),
        "reward_to_go": rtg,
        "rtg_const_baseline": rtg - constant_baseline,
        "rtg_value_baseline": rtg - v_t,
        "rtg_learned_baseline": rtg - v_hat,
        "normalized": returns.normalize(rtg, mask),
    }


def tabular_estimate(obs: jax.Array, action: jax.Array, logits: jax.Array, weights: jax.Array) -> jax.Array:
    """ĝ = 1/M Σ_{t,i} w_{t,i} onehot(s_{t,i}) ⊗ (onehot(a_{t,i}) − π(·|s_{t,i})), batch axes leading.

    Args:
      obs: [T, ..., M, S] one-hot states. action: [T, ..., M] int. logits: [S, A].
      weights: [T, ..., M] (the mask already multiplied in).
    Returns:
      [..., S, A] one estimate per leading batch index (the sum over time, the mean over M).
    """
    obs, action, logits, weights = (as_array(n, x) for n, x in (("obs", obs), ("action", action), ("logits", logits), ("weights", weights)))
    check_rank("logits", logits, 2, "[S, A]")
    check_floating("logits", logits)
    check_floating("weights", weights)
    check_min_rank("weights", weights, 2, "[T, ..., M]")
    check_same_shape(action=action, weights=weights)
    check_integer("action", action)
    check_shape("obs", obs, jnp.shape(action) + jnp.shape(logits)[:1], "[T, ..., M, S]: the shape of action, then S of logits [S, A]")
    check_index("action", action, jnp.shape(logits)[-1])
    probs = jax.nn.softmax(obs @ logits, axis=-1)  # [T, ..., M, A]
    score_a = jax.nn.one_hot(action, logits.shape[-1], dtype=probs.dtype) - probs
    num = weights.shape[-1]
    return jnp.einsum("t...m,t...ms,t...ma->...sa", weights, obs, score_a) / num


def batch_estimates(
    traj: Trajectory,
    mask: jax.Array,
    logits: jax.Array,
    values: jax.Array,
    constant_baseline: jax.Array | float,
    batch_size: int,
) -> dict[str, jax.Array]:
    """Every variant's estimate for N batches of the first `batch_size` episodes of each row.

    Args:
      traj: Trajectory [T, N, M, ...] (episodes grouped into N rows of M >= batch_size).
      mask: [T, N, M]. logits: [S, A]. values: [T + 1, S]. constant_baseline: scalar.
      batch_size: m (static), 1 <= m <= M.
    Returns:
      {variant: [N, S, A]}. Batch n's learned baseline is fit on batch n + 1 (mod N): independent
      of batch n, but it makes estimates n and n + 1 dependent.
    """
    check_rank("mask", mask, 3, "[T, N, M]")
    m = int(batch_size)
    if not 1 <= m <= mask.shape[2]:
        raise ValueError(f"`batch_size` must lie in [1, {mask.shape[2]}]; got {m}.")
    sub = jax.tree.map(lambda x: x[:, :, :m], traj)
    sub_mask = mask[:, :, :m]

    learned = jax.vmap(monte_carlo_values, in_axes=(1, 1))(sub, sub_mask)  # [N, T, S]
    learned = jnp.roll(learned, -1, axis=0)

    def one_batch(t: Trajectory, k: jax.Array, v_hat: jax.Array):  # t: [T, m, ...]
        return variant_weights(t, k, values, constant_baseline, v_hat)

    weights = jax.vmap(one_batch, in_axes=(1, 1, 0), out_axes=1)(sub, sub_mask, learned)
    return {v: tabular_estimate(sub.obs, sub.action, logits, w * sub_mask) for v, w in weights.items()}


# ----------------------------------------------------------------------------- statistics


def estimator_stats(estimates, exact_grad, num_sigmas: float = 3.0) -> dict[str, float]:
    """Bias, variance, RMSE and cosine of N estimates against the exact gradient.

    Args:
      estimates: [N, ...] one estimate per batch, N >= 1. exact_grad: [...] ∇J.
      num_sigmas: >= 0, the width of bias_ci.
    Returns:
      {"bias": ‖mean − ∇J‖, "bias_ci": num_sigmas · sqrt(tr Cov / N) (the bias of an unbiased
      estimator exceeds it rarely), "variance": tr Cov (ddof 1), "rmse": sqrt(mean ‖ĝ − ∇J‖²),
      "cosine": mean cos(ĝ, ∇J) (0 for ĝ = 0), "num_batches": N}.
    """
    g, target = np.asarray(estimates, np.float64), np.asarray(exact_grad, np.float64)
    if g.ndim < 1 or g.shape[1:] != target.shape:
        raise ValueError(
            f"`estimates` must have shape [N, ...] = [N, *exact_grad.shape] with `exact_grad` {target.shape}; got {g.shape}."
        )
    if g.shape[0] < 1:
        raise ValueError(f"`estimates` must hold at least one estimate (N >= 1); got shape {g.shape}.")
    check_in_interval("num_sigmas", num_sigmas, 0.0, np.inf)
    g, target = g.reshape(len(g), -1), target.reshape(-1)
    n = g.shape[0]
    variance = float(np.sum(np.var(g, axis=0, ddof=1))) if n > 1 else 0.0
    norms = np.linalg.norm(g, axis=1) * np.linalg.norm(target)
    cos = np.where(norms > 0, g @ target / np.where(norms > 0, norms, 1.0), 0.0)
    return {
        "bias": float(np.linalg.norm(g.mean(axis=0) - target)),
        "bias_ci": float(num_sigmas * np.sqrt(variance / n)),
        "variance": variance,
        "rmse": float(np.sqrt(np.mean(np.sum((g - target) ** 2, axis=1)))),
        "cosine": float(np.mean(cos)),
        "num_batches": n,
    }


def measure(
    key: jax.Array,
    env: FiniteEnv,
    params: FiniteEnvParams,
    logits: jax.Array,
    batch_sizes: Sequence[int],
    num_batches: int,
    variants: Sequence[str] = VARIANTS,
) -> dict:
    """Run the lab on one world: N·max(m) episodes in one vmapped rollout, grouped into N rows;
    batch size m uses the first m episodes of each row (the N batches of one m are independent).

    Args:
      key: PRNG key. env, params: a FiniteEnv and `tabular_params(env, ...)`. logits: [S, A].
      batch_sizes: the m to measure. num_batches: N.
    Returns:
      {"exact_J", "exact_grad_norm", "horizon", "rows": [{"variant", "m", **estimator_stats}]}.
    """
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown `variants` {sorted(unknown)}; choose from {VARIANTS}.")
    check_size("num_batches", num_batches, minimum=2)
    if not batch_sizes:
        raise ValueError(f"`batch_sizes` must name at least one batch size; got {batch_sizes!r}.")
    for m in batch_sizes:
        check_size("batch_sizes", m)
    horizon = int(params.max_steps_in_episode)
    mdp = env.tabular_mdp(params)

    @jax.jit  # one program (op by op: dozens of small compiles); logits concrete in it, so exact checks them
    def exact_targets():
        values = exact.finite_horizon_values(mdp, logits, horizon)
        return exact.finite_horizon_policy_gradient(mdp, logits, horizon), values, mdp.initial @ values[0]

    grad, values, J = exact_targets()
    M = max(batch_sizes)

    @jax.jit
    def sample(key):
        traj, mask = sample_episodes(key, env, params, logits, num_batches * M)
        split = lambda x: x.reshape(x.shape[:1] + (num_batches, M) + x.shape[2:])  # noqa: E731
        return jax.tree.map(split, traj), split(mask)

    traj, mask = sample(key)
    estimate = jax.jit(batch_estimates, static_argnames="batch_size")
    rows = []
    for m in batch_sizes:
        est = estimate(traj, mask, logits, values, J, batch_size=m)
        for v in variants:
            rows.append({"variant": v, "m": int(m), **estimator_stats(est[v], grad)})
    return {
        "exact_J": float(J),
        "exact_grad_norm": float(jnp.linalg.norm(grad)),
        "horizon": horizon,
        "rows": rows,
    }


# ----------------------------------------------------------------------------- the training path


def measure_training_path(
    key: jax.Array,
    configs: dict,
    theta: jax.Array,
    num_windows: int,
    batch_sizes: Sequence[int] = (1, 4, 16, 64),
    num_sigmas: float = 3.0,
) -> dict:
    """Every REINFORCE config's update, as training computes it, against the exact gradient.

    Each config is a `rlpg.algos.reinforce.Config` on the same finite world (`env_id` of
    `rlpg.envs.REGISTRY`), `policy="linear"` (softmax over observation ⊗ action, θ [F·A]), the
    same num_envs and num_steps, and γ = `config.gamma`. For N = `num_windows` consecutive
    windows of the carried, auto-resetting environments (`reinforce.collect`, the continuation
    included), ĝ_n is the update's own estimate (`reinforce.make_policy_gradient`) at the fixed
    θ; a learned baseline keeps its initial critic. The exact target is ∇_θ J_γ, J_γ =
    `exact.finite_horizon_expected_return(mdp, O θ, H, γ)` (O the observations [S, F]).

    Windows follow each other, so they are not independent (the carried state links them);
    the ±band is num_sigmas·sqrt(tr Cov / N_eff) with N_eff = N / (1 + 2 Σ_k ρ_k), ρ_k the
    lag-k autocorrelation of ĝ·∇J summed while positive.

    Returns:
      {"exact_J", "exact_grad_norm", "horizon", "rows": [{"variant", "scale" (c ≥ 0 of the best
      c·∇J: 0 when the mean points against ∇J), "cosine" (of the mean), "residual"
      (‖mean − c∇J‖), "band", "biased" (residual > band), "variance" (tr Cov of one window's
      estimate, ×1 / (c²‖∇J‖²)), "relative_error" {m: E‖mean of m windows − c∇J‖ / ‖c∇J‖}}]}
      (relative to ‖∇J‖ where c = 0).
    """
    first = next(iter(configs.values()))
    for name, c in configs.items():  # one world, one batch: what the estimates are compared on
        for field in ("env_id", "num_envs", "num_steps", "policy", "normalize_obs"):
            if getattr(c, field) != getattr(first, field):
                raise ValueError(f"`configs` must share {field}: {name!r} has {getattr(c, field)!r}, "
                                 f"the first config {getattr(first, field)!r}.")
    networks = on_policy.make_networks(first.validate())  # the policy training builds from the config
    env, env_params, policy = networks.env, networks.env_params, networks.policy
    horizon = int(env_params.max_steps_in_episode)
    mdp = env.tabular_mdp(env_params)
    obs = env_params.observations
    num_actions = env.num_actions

    def objective(th, gamma):
        return exact.finite_horizon_expected_return(mdp, obs @ th.reshape(obs.shape[1], num_actions), horizon, gamma)

    counted = first.replace(baseline="none", discount_weighting="gradient")
    carried = first.replace(baseline="value", discount_weighting="gradient")
    value_params = jax.jit(reinforce.make_algorithm(carried).init)(jax.random.PRNGKey(0)).params["value"]  # compiled, as training's
    params = {"policy": theta, "value": value_params}
    gradients = {name: reinforce.make_policy_gradient(c) for name, c in configs.items()}

    @jax.jit
    def run(key):
        batch = reset(key, env, env_params, first.num_envs)

        def window(carry, k):
            counted_envs, carried_envs = carry
            counted_envs, counted_win = reinforce.collect(k, counted, policy, theta, env, env_params, counted_envs)
            carried_envs, carried_win = reinforce.collect(k, carried, policy, theta, env, env_params, carried_envs)
            out = {}
            for name, c in configs.items():
                win = counted_win if reinforce.counts_by_start(c) else carried_win
                out[name] = gradients[name](params, win)
            return (counted_envs, carried_envs), out

        return jax.lax.scan(window, (batch, batch), jax.random.split(key, num_windows))[1]

    estimates = run(key)
    gammas = sorted({float(c.gamma) for c in configs.values()})
    exact_grad = jax.jit(jax.grad(objective), static_argnums=1)  # γ concrete: exact's check of it runs as before
    exact_grads = {gm: exact_grad(theta, gm) for gm in gammas}  # one per γ, not one per variant
    rows = []
    for name, c in configs.items():
        target = np.asarray(exact_grads[float(c.gamma)], np.float64)
        g = np.asarray(estimates[name], np.float64)
        rows.append({"variant": name, "gamma": float(c.gamma), **_direction_stats(g, target, batch_sizes, num_sigmas)})
    return {
        "exact_J": {str(gm): float(objective(theta, gm)) for gm in gammas},
        "exact_grad_norm": {str(gm): float(jnp.linalg.norm(exact_grads[gm])) for gm in gammas},
        "horizon": horizon,
        "num_windows": int(num_windows),
        "rows": rows,
    }


def _direction_stats(g: np.ndarray, target: np.ndarray, batch_sizes: Sequence[int], num_sigmas: float) -> dict:
    """Statistics of N estimates g [N, P] against c·target, c >= 0 fitted (see `measure_training_path`):
    a mean pointing against the target fits c = 0, so its whole length is residual (bias)."""
    n = len(g)
    mean = g.mean(axis=0)
    scale = max(float(mean @ target / (target @ target)), 0.0)
    aim = scale * target
    projection = g @ target
    centred = projection - projection.mean()
    spread = float(centred @ centred)
    rho_sum = 0.0
    for lag in range(1, min(50, n // 4) if spread > 0 else 1):  # a constant projection: no correlation to sum
        rho = float(centred[:-lag] @ centred[lag:]) / spread
        if rho <= 0:
            break
        rho_sum += rho
    n_eff = n / (1.0 + 2.0 * rho_sum)
    variance = float(np.sum(np.var(g, axis=0, ddof=1)))
    band = float(num_sigmas * np.sqrt(variance / n_eff))
    residual = float(np.linalg.norm(mean - aim))
    norm = max(np.linalg.norm(aim if scale > 0 else target), 1e-30)  # relative to c‖∇J‖, or to ‖∇J‖ when c = 0
    errors = {}
    for m in batch_sizes:
        if m <= n // 2:
            groups = g[: (n // m) * m].reshape(n // m, m, -1).mean(axis=1)
            errors[str(m)] = float(np.mean(np.linalg.norm(groups - aim, axis=1)) / norm)
    return {
        "scale": scale,
        "cosine": float(mean @ target / max(np.linalg.norm(mean) * np.linalg.norm(target), 1e-30)),
        "residual": residual,
        "band": band,
        "biased": bool(residual > band),
        "variance": variance / norm**2,
        "relative_error": errors,
    }
