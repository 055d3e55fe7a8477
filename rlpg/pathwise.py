"""Pathwise (reparameterization) policy gradients through differentiable environments, the
score-function estimate of the same episode, and their inverse-variance mixture.

A Gaussian policy acts by a = μ_θ(s) + σ_θ ε with ε ~ N(0, I) drawn from the key, and an env
whose transitions carry gradients (gymnax's `env.with_transition_gradients()`: Pendulum-v1,
MountainCarContinuous-v0, PointRobot-misc, Reacher-misc, Swimmer-misc, and `rlpg.envs.LQR`)
makes s_{t+1} = f(s_t, a_t, ξ_t) a differentiable function of θ for fixed noise (ε, ξ). Then

    R(θ; ε, ξ) = Σ_{t<H} γ^t r(s_t, a_t)            (`rollout_return`)

is a differentiable function of θ and ∇_θ R is an unbiased estimate of ∇J (backpropagation
through time: the pathwise, "analytic" policy gradient of APG/SHAC). `score_function_return`
has the same value, R, with the score-function (likelihood-ratio) gradient
Σ_t ∇log π(a_t|s_t)(G_t − b_t) instead. `estimators.per_sample_grads(fn, params, keys)` gives the
per-episode gradients of either (their spread is the estimator's variance), and
`mixed_gradient` combines the two per parameter by inverse-variance weights (PIPPS's total
propagation).

Episode ends. gymnax's `step` resets an environment inside the step that ends its episode and
returns the reset observation, selected by `lax.select(done, reset, step)`. The reset branch
does not depend on θ and `select` routes the cotangent only to the branch it chose, so no
gradient crosses an episode boundary. `rollout_return` counts the episode that starts at the
reset, up to and including its first terminated or truncated step (an alive mask zeroes every
later reward, value and gradient), so for H beyond the env's time limit it is the return of
that one episode. `short_horizon_return` (what `--algo apg` optimizes) continues across ends:
a terminated step adds nothing after it, a truncated one is bootstrapped with V of its
pre-reset observation (`info["final_observation"]`, differentiable), and the discount restarts
for the episode that follows.

Truncated gradient horizon (`gradient_horizon=h`): the state and observation are cut
(`stop_gradient`) every h steps, so ∇ sums the pathwise terms of windows of h steps (biased
for h < H, and far less variable on chaotic dynamics); with `value_fn` each window's gradient
also has γ^c ∇V(s_c) at its cut c (SHAC's critic) while the value stays R.

Actions are clipped into a Box action space before the env sees them (zero gradient where
clipped); log π and the reparameterization use the unclipped action.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from rlpg import distributions, estimators, returns
from rlpg._checks import as_array, check_in_interval, check_leading_size, check_rank, check_shape, check_size
from rlpg.policies import Policy
from rlpg.rollout import env_action

ValueFn = Callable[[jax.Array], jax.Array]  # obs [*obs_shape] -> [] (params closed over)


def _check_gaussian_policy(policy: Policy) -> None:
    if policy.distribution is not distributions.gaussian:
        raise ValueError(
            "`policy` must be Gaussian (distributions.gaussian) for a reparameterized action; "
            "a categorical policy has no pathwise gradient."
        )


def _check_sample_trees(pathwise: Any, score: Any) -> int:
    """N: `pathwise` and `score` are pytrees of the same structure whose leaves are per-sample
    gradients [N, ...], leaf by leaf of one shape, with one N over all leaves."""
    p_structure, s_structure = jax.tree.structure(pathwise), jax.tree.structure(score)
    if p_structure != s_structure:
        raise ValueError(
            "`pathwise` and `score` must be gradients of the same parameters (one pytree structure); "
            f"got {p_structure} and {s_structure}."
        )
    n = check_leading_size("pathwise", pathwise)
    for (path, p), s in zip(jax.tree_util.tree_flatten_with_path(pathwise)[0], jax.tree.leaves(score)):
        if jnp.shape(p) != jnp.shape(s):
            where = jax.tree_util.keystr(path)
            raise ValueError(f"`pathwise`{where} and `score`{where} must have the same shape [N, ...]; "
                             f"got {jnp.shape(p)} and {jnp.shape(s)}.")
    return n


def _check_keys(name: str, keys) -> int:
    """N of a batch of PRNG keys: typed keys [N] or raw uint32 key data [N, 2] (or [N, 4]), as
    `jax.random.split(key, N)` makes; a single key is refused, not read as its words."""
    dtype, shape = getattr(keys, "dtype", None), getattr(keys, "shape", None)
    typed = dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)
    if typed:
        ok, single = len(shape) == 1, shape == ()
    else:
        raw = dtype == jnp.uint32 and shape is not None
        ok = raw and len(shape) == 2 and shape[1] in (2, 4)
        single = raw and len(shape) == 1 and shape[0] in (2, 4)
    if not ok:
        got = f"{type(keys).__name__} {keys!r}" if dtype is None else f"dtype {dtype}, shape {shape}"
        hint = " (one key: split it, jax.random.split(key, N))" if single else ""
        raise TypeError(
            f"`{name}` must be N PRNG keys [N] as jax.random.split(key, N) makes (uint32 [N, 2] or typed "
            f"keys [N]); got {got}{hint}."
        )
    return shape[0]


def reparameterized_action(key: jax.Array, policy: Policy, params: Any, obs: jax.Array) -> tuple[jax.Array, Any]:
    """a = μ_θ(s) + σ_θ(s) ε, ε ~ N(0, I) from `key` (the noise `gaussian_sample` draws, without
    its stop_gradient), and the distribution (μ, log σ). obs [*obs_shape] -> (a [D], dist)."""
    mean, log_std = policy.apply(params, obs)
    noise = jax.random.normal(key, jnp.shape(mean), jnp.result_type(mean))
    return mean + jnp.exp(log_std) * noise, (mean, log_std)


def unroll(
    key: jax.Array,
    policy: Policy,
    params: Any,
    env,
    env_params,
    obs: jax.Array,
    state: Any,
    num_steps: int,
    gradient_horizon: int | None = None,
    detach_actions: bool = False,
) -> tuple[tuple[jax.Array, Any], dict[str, jax.Array]]:
    """`num_steps` steps of one environment from (obs, state), differentiable end to end.

    Step t uses `split(split(key, T)[t])` as (action key, env key). Every `gradient_horizon` steps
    the carried obs and state are cut by `stop_gradient`; `detach_actions` stops the gradient
    at each action (for the score-function estimate of the same episode).

    Returns:
      ((obs, state) after the last step, auto-reset like gymnax's),
      {"reward": [T], "terminated": [T], "truncated": [T] bool, "log_prob": [T] log π(a_t|s_t)
       (at the detached action with `detach_actions`, so its gradient is the score),
       "obs": [T, *obs_shape] s_t as the policy saw it, "next_obs": [T, *obs_shape] the
       pre-reset s_{t+1} (before any cut)}.
    """
    _check_gaussian_policy(policy)
    num_steps = check_size("num_steps", num_steps)
    cut_every = num_steps if gradient_horizon is None else check_size("gradient_horizon", gradient_horizon)

    def body(carry, inputs):
        obs, state = carry
        t, step_key = inputs
        act_key, env_key = jax.random.split(step_key)
        action, dist = reparameterized_action(act_key, policy, params, obs)
        if detach_actions:
            action = jax.lax.stop_gradient(action)
        log_prob = distributions.gaussian_log_prob(*dist, action)
        next_obs, next_state, reward, terminated, truncated, info = env.step(
            env_key, state, env_action(env, env_params, action), env_params
        )
        cut = (t + 1) % cut_every == 0
        next_obs, next_state = jax.tree.map(
            lambda x: jnp.where(cut, jax.lax.stop_gradient(x), x), (next_obs, next_state)
        )
        out = {
            "reward": jnp.asarray(reward),
            "terminated": terminated,
            "truncated": truncated,
            "log_prob": log_prob,
            "obs": obs,
            "next_obs": info["final_observation"],
        }
        return (next_obs, next_state), out

    steps = (jnp.arange(num_steps), jax.random.split(key, num_steps))
    return jax.lax.scan(body, (obs, state), steps)


def _episode(key, policy, params, env, env_params, horizon, gamma, gradient_horizon=None, detach_actions=False):
    """One episode from reset: (steps dict of `unroll`, weights γ^t alive_t [T])."""
    horizon = check_size("horizon", horizon)
    check_in_interval("gamma", gamma, 0.0, 1.0)
    reset_key, run_key = jax.random.split(key)
    obs, state = env.reset(reset_key, env_params)
    _, steps = unroll(run_key, policy, params, env, env_params, obs, state, horizon, gradient_horizon, detach_actions)
    done = jnp.logical_or(steps["terminated"], steps["truncated"])
    alive = returns.first_episode_mask(done).astype(steps["reward"].dtype)
    weights = alive * jnp.asarray(gamma, steps["reward"].dtype) ** jnp.arange(horizon)
    return steps, weights


def rollout_return(
    key: jax.Array,
    policy: Policy,
    params: Any,
    env,
    env_params,
    horizon: int,
    gamma: float | jax.Array = 1.0,
    gradient_horizon: int | None = None,
    value_fn: ValueFn | None = None,
) -> jax.Array:
    """R = Σ_{t<H} γ^t r_t of one episode from reset, reparameterized: `jax.grad` w.r.t. `params`
    is the pathwise gradient (backpropagation through the env's transitions, which must have
    gradients enabled, `env.with_transition_gradients()`; otherwise only the reward's direct
    dependence on the action is differentiated).

    Args:
      key: PRNG key (the reset, every action noise ε_t and env noise ξ_t).
      policy: a Gaussian `Policy`; params: its parameters.
      env, env_params: a gymnax env. horizon: H, a static int (the episode is counted up to its
        first end; see the module docstring).
      gamma: γ. gradient_horizon: h, cut the gradient every h steps (None: h = H).
      value_fn: V(obs [*obs_shape]) -> [], adds γ^c (V(s_c) − stop_gradient(V(s_c))) at each cut
        c = h, 2h, ... < H where the episode is alive: SHAC's critic in the gradient, 0 in value.
    Returns:
      [] scalar R.
    """
    if value_fn is not None and (gradient_horizon is None or gradient_horizon >= horizon):
        raise ValueError(
            f"`value_fn` bootstraps at the cuts of the gradient, so it needs `gradient_horizon` < horizon "
            f"= {horizon}; got gradient_horizon={gradient_horizon!r}."
        )
    steps, weights = _episode(key, policy, params, env, env_params, horizon, gamma, gradient_horizon)
    total = jnp.sum(weights * steps["reward"])
    if value_fn is not None:
        cut = (jnp.arange(horizon) + 1) % gradient_horizon == 0  # step t ends a window at c = t + 1
        boot_weight = jnp.concatenate([weights[1:], jnp.zeros((1,), weights.dtype)])  # γ^c alive_c
        values = jax.vmap(value_fn)(steps["next_obs"])
        total = total + jnp.sum(jnp.where(cut, boot_weight, 0.0) * (values - jax.lax.stop_gradient(values)))
    return total


def episode_rewards(
    key: jax.Array, policy: Policy, params: Any, env, env_params, horizon: int, gamma: float | jax.Array = 1.0
) -> jax.Array:
    """The discounted rewards γ^t r_t alive_t [H] of the episode `rollout_return(key, ...)` plays
    (no gradient): their reverse cumulative sum is the reward-to-go, from which baselines are made."""
    steps, weights = _episode(key, policy, params, env, env_params, horizon, gamma, detach_actions=True)
    return jax.lax.stop_gradient(weights * steps["reward"])


def score_function_return(
    key: jax.Array,
    policy: Policy,
    params: Any,
    env,
    env_params,
    horizon: int,
    gamma: float | jax.Array = 1.0,
    baseline: jax.Array | None = None,
) -> jax.Array:
    """The same episode and value R as `rollout_return(key, ...)`, with the score-function gradient

        ∇ = Σ_{t<H} alive_t ∇log π_θ(a_t|s_t) (G_t − b_t),   G_t = Σ_{k≥t} γ^k r_k alive_k,

    (actions and transitions detached; G_t discounted from the episode's start, as J is).

    Args:
      baseline: b [H] (no gradient; it must not depend on this episode's noise to stay
        unbiased, e.g. a leave-one-out mean of other episodes' G), or None for 0.
    Returns:
      [] scalar whose value is R.
    """
    horizon = check_size("horizon", horizon)
    if baseline is not None:
        baseline = as_array("baseline", baseline)
        check_shape("baseline", baseline, (horizon,), f"[H], one per step of the horizon H = {horizon}")
    steps, weights = _episode(key, policy, params, env, env_params, horizon, gamma, detach_actions=True)
    rewards = jax.lax.stop_gradient(weights * steps["reward"])
    reward_to_go = jnp.cumsum(rewards[::-1])[::-1]
    if baseline is not None:
        reward_to_go = reward_to_go - jax.lax.stop_gradient(baseline)
    surrogate = jnp.sum((weights > 0) * steps["log_prob"] * reward_to_go)
    return jnp.sum(rewards) + surrogate - jax.lax.stop_gradient(surrogate)


def leave_one_out_baseline(rewards: jax.Array) -> jax.Array:
    """b_i,t = mean_{j≠i} G_j,t: each episode's baseline from the others' reward-to-go, so the
    score-function estimate stays unbiased. rewards [N, H] (`episode_rewards`) -> [N, H]."""
    rewards = as_array("rewards", rewards)
    check_rank("rewards", rewards, 2, "[N, H]")
    n = rewards.shape[0]
    if n < 2:
        raise ValueError(f"`rewards` needs N >= 2 episodes for a leave-one-out baseline; got N = {n}.")
    reward_to_go = jnp.cumsum(rewards[:, ::-1], axis=1)[:, ::-1]
    return (reward_to_go.sum(0, keepdims=True) - reward_to_go) / (n - 1)


def inverse_variance_weights(pathwise: Any, score: Any) -> Any:
    """w = Var[score] / (Var[pathwise] + Var[score]) per parameter, PIPPS's rule: the weight of
    the pathwise estimate in the minimum-variance combination w ĝ_pw + (1 − w) ĝ_sf of two
    INDEPENDENT estimates. `per_episode_gradients` gives both from the same episodes, so they are
    correlated and the exact minimum is (Var_sf − Cov)/(Var_pw + Var_sf − 2 Cov); on the pathwise
    lab's worlds the correlation of 16-episode means is at most 0.25 and even exact weights gain
    at most 3% from the covariance, while estimating it from 8 episodes costs 19-74% variance.
    pathwise, score: pytrees of per-sample gradients [N, ...] -> pytree [...]."""
    _check_sample_trees(pathwise, score)

    def weight(p, s):
        var_p, var_s = jnp.var(p, axis=0), jnp.var(s, axis=0)
        total = var_p + var_s
        return jnp.where(total > 0, var_s / jnp.where(total > 0, total, 1.0), 0.5)

    return jax.tree.map(weight, pathwise, score)


def mixed_gradient(pathwise: Any, score: Any) -> Any:
    """The inverse-variance mixture of pathwise and score-function gradients, cross-fitted:

        ĝ = ½ [w_B ĝ_pw(A) + (1 − w_B) ĝ_sf(A)] + ½ [w_A ĝ_pw(B) + (1 − w_A) ĝ_sf(B)],

    with A, B the two halves of the N samples, ĝ(A) a half's mean and w_A its
    `inverse_variance_weights`: a half's weights never multiply its own samples, so ĝ is
    unbiased whenever both estimators are and the halves are independent. Score samples with a
    baseline from the other episodes must take it from their own half (`per_episode_gradients`
    does): with a baseline over all N, w_B depends on A's returns and ĝ is biased (6% of ∇J
    at N = 4 on a 1-D LQR). pathwise, score: per-sample gradients [N, ...] (N even, >= 4) of
    the same parameters -> pytree [...].

    The weights come from N/2 samples, so they are noisy: where one estimator dominates, the
    mixture's variance exceeds the better one's (N = 16 on the LQRs of `experiments.pathwise_lab`:
    1.1-3x the pathwise variance, which exact weights would match; with heavy-tailed pathwise
    samples, Pendulum at H = 64 under a zero-mean policy, 6x the score estimator's; 4000 estimates
    each, experiments/results/pathwise_lab/mixture_weights.txt).
    """
    n = _check_sample_trees(pathwise, score)
    if n < 4 or n % 2:
        raise ValueError(f"`pathwise` and `score` need an even number N >= 4 of samples; got N = {n}.")
    half = n // 2
    first = jax.tree.map(lambda x: x[:half], (pathwise, score))
    second = jax.tree.map(lambda x: x[half:], (pathwise, score))
    w_first, w_second = inverse_variance_weights(*first), inverse_variance_weights(*second)

    def combine(w, p, s):
        return w * p.mean(0) + (1.0 - w) * s.mean(0)

    part_first = jax.tree.map(combine, w_second, *first)
    part_second = jax.tree.map(combine, w_first, *second)
    return jax.tree.map(lambda a, b: 0.5 * (a + b), part_first, part_second)


def short_horizon_return(
    key: jax.Array,
    policy: Policy,
    params: Any,
    env,
    env_params,
    obs: jax.Array,
    state: Any,
    horizon: int,
    gamma: float | jax.Array,
    value_fn: ValueFn | None = None,
) -> tuple[jax.Array, tuple[jax.Array, Any], dict[str, jax.Array]]:
    """SHAC's window objective from (obs, state), across episode ends (see the module docstring):

        L = Σ_{t<h} d_t r_t + Σ_{t<h} γ d_t b_t V(s'_t),   d_0 = 1, d_{t+1} = 1 if done_t else γ d_t,

    with b_t = 1 on truncated steps and on the window's last step unless it terminated (V = 0
    without `value_fn`). The window starts detached from whatever produced (obs, state).

    Returns:
      (L [], (obs, state) to continue from (detached), the `unroll` steps dict).
    """
    check_in_interval("gamma", gamma, 0.0, 1.0)
    obs, state = jax.lax.stop_gradient((obs, state))
    (obs, state), steps = unroll(key, policy, params, env, env_params, obs, state, horizon)
    done = jnp.logical_or(steps["terminated"], steps["truncated"])
    dtype = steps["reward"].dtype
    gamma = jnp.asarray(gamma, dtype)
    discounts = jax.lax.scan(lambda d, end: (jnp.where(end, 1.0, gamma * d).astype(dtype), d), jnp.ones((), dtype), done)[1]
    total = jnp.sum(discounts * steps["reward"])
    if value_fn is not None:
        last = jnp.arange(horizon) == horizon - 1
        bootstrap = jnp.logical_and(~steps["terminated"], jnp.logical_or(steps["truncated"], last))
        total = total + jnp.sum(gamma * discounts * bootstrap * jax.vmap(value_fn)(steps["next_obs"]))
    return total, jax.lax.stop_gradient((obs, state)), steps


def per_episode_gradients(
    keys: jax.Array,
    policy: Policy,
    params: Any,
    env,
    env_params,
    horizon: int,
    gamma: float | jax.Array = 1.0,
    gradient_horizon: int | None = None,
    baseline_groups: int = 2,
) -> dict[str, Any]:
    """Both estimators on the same N episodes (episode i plays from keys[i]):

    {"pathwise": ∇ `rollout_return` [N, ...], "score": ∇ `score_function_return` with the
    `leave_one_out_baseline` [N, ...] (pytrees shaped like `params` with a leading N),
    "return": R [N]}. Their means are unbiased estimates of ∇J (the pathwise one only with
    gradient_horizon None or >= H); `mixed_gradient(out["pathwise"], out["score"])` mixes them.

    The baseline of episode i is the mean over the others of its group: the N episodes split
    into `baseline_groups` consecutive groups of equal size (>= 2). The default, 2, gives the
    halves `mixed_gradient` cross-fits, which keeps the mixture unbiased; 1 takes the baseline
    from all N (a score estimate alone varies a little less, but mixing it is biased).
    """
    n = _check_keys("keys", keys)
    if baseline_groups < 1 or n % baseline_groups or n // baseline_groups < 2:
        raise ValueError(f"`baseline_groups` must split the N = {n} episodes into equal groups of at least 2; "
                         f"got {baseline_groups}.")
    rewards = jax.vmap(lambda k: episode_rewards(k, policy, params, env, env_params, horizon, gamma))(keys)
    grouped = rewards.reshape(baseline_groups, n // baseline_groups, -1)
    baselines = jax.vmap(leave_one_out_baseline)(grouped).reshape(rewards.shape)
    score = estimators.per_sample_grads(
        lambda prm, k, b: score_function_return(k, policy, prm, env, env_params, horizon, gamma, b),
        params,
        keys,
        baselines,
    )
    path = estimators.per_sample_grads(
        lambda prm, k: rollout_return(k, policy, prm, env, env_params, horizon, gamma, gradient_horizon), params, keys
    )
    return {"pathwise": path, "score": score, "return": rewards.sum(1)}
