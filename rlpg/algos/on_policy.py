"""The on-policy skeleton: REINFORCE, A2C, PPO and NPG are each a learning step on it.

`make_algorithm(config, make_learner)` builds the environment, the policy (and V), `init`, and the
update: split the run's key, collect a window of experience with the current policy
(`rollout.rollout`, or the learner's own `collect`), hand it to the learner's

    learn(params, opt_state, extra, batch, cfg, key) -> (params, opt_state, extra, stats),

merge the window's num_steps × num_envs observations into the running statistics
(`normalize_obs`), count the update and report its metrics (`common.update_metrics`). `cfg` is the config with the run's traced
`hparams` in place; `key` is a fresh key when the learner asks for one (`uses_key`), else None.
A new on-policy algorithm is a Config (a subclass of `common.OnPolicyConfig`) and a
`make_learner(config, networks) -> Learner`; see docs/extending.md.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from rlpg import envs, normalization, returns, rollout
from rlpg.algos.common import Algorithm, TrainState, checks_hparams, default_progress, train_fn, update_metrics
from rlpg.policies import Policy, ValueFunction, make_policy, mlp_value


class Networks(NamedTuple):
    """The environment and the networks of an on-policy config (`make_networks`)."""

    env: Any
    env_params: Any
    policy: Policy  # acts; with normalize_obs its params are {"net", "obs_stats"}
    value_fn: ValueFunction  # V_w on (standardized) observations
    normalize_obs: bool

    def value(self, params: dict, obs: jax.Array) -> jax.Array:
        """V(s) [...] for obs [..., *obs_shape] and params {"policy", "value"}; with normalize_obs
        the observations are standardized by the policy's statistics first, as the policy does."""
        if self.normalize_obs:
            obs = normalization.standardize(params["policy"]["obs_stats"], obs.astype(jnp.float32))
        return self.value_fn.apply(params["value"], obs)


def make_networks(config: Any, env_and_params: tuple[Any, Any] | None = None) -> Networks:
    """The env (`rlpg.envs.make(config.env_id)`, or `env_and_params`), the policy that fits its
    action space (`policies.make_policy` with the config's kind, sizes and continuous_actions;
    wrapped by `normalization.normalize_observations` with normalize_obs) and an MLP V."""
    env, env_params = env_and_params or envs.make(config.env_id)
    obs_shape = env.observation_space(env_params).shape
    policy = make_policy(env, env_params, config.hidden, config.activation, config.policy, config.continuous_actions)
    if config.normalize_obs:
        policy = normalization.normalize_observations(policy, obs_shape)
    value_fn = mlp_value(obs_shape, config.hidden, config.activation)
    return Networks(env, env_params, policy, value_fn, config.normalize_obs)


class Learner(NamedTuple):
    """What an on-policy algorithm supplies to `make_algorithm`.

    init: `(params, cfg) -> (opt_state, extra)`, the optimizer's state and what else `learn` carries.
    learn: `(params, opt_state, extra, batch, cfg, key) -> (params, opt_state, extra, stats)`, one
      update's learning on the window; stats are scalars, reported as metrics.
    uses_value: whether params hold a learned V ("value").
    uses_key: whether `learn` gets a PRNG key (else None).
    collect: `(key, policy_params, envs) -> (envs, traj, batch)`, the window (traj: a
      `rollout.Trajectory`, for the episode metrics; batch: what `learn` gets); default
      `rollout.rollout` of num_steps steps, batch = traj.
    """

    init: Callable[[dict, Any], tuple[Any, dict]]
    learn: Callable[..., tuple[dict, Any, dict, dict]]
    uses_value: bool = True
    uses_key: bool = False
    collect: Callable | None = None


def make_init(config: Any, networks: Networks, init_rest: Callable[[dict, Any], tuple[Any, dict]], uses_value: bool = True):
    """`init(key, hparams=None) -> TrainState`: policy (and V) parameters, `init_rest(params, cfg)
    -> (opt_state, extra)`, `num_envs` reset environments; hparams checked (`checks_hparams`)."""

    @checks_hparams(config)
    def init(key: jax.Array, hparams: dict | None = None) -> TrainState:
        policy_key, value_key, env_key, run_key = jax.random.split(key, 4)
        params = {"policy": networks.policy.init(policy_key)}
        if uses_value:
            params["value"] = networks.value_fn.init(value_key)
        opt_state, extra = init_rest(params, config.replace(**hparams))
        return TrainState(
            params=params,
            opt_state=opt_state,
            envs=rollout.reset(env_key, networks.env, networks.env_params, config.num_envs),
            extra=extra,
            key=run_key,
            update=jnp.zeros((), jnp.int32),
            hparams=hparams,
        )

    return init


def make_algorithm(
    config: Any, make_learner: Callable[[Any, Networks], Learner], progress: Callable[[dict], None] | None = None
) -> Algorithm:
    """The on-policy algorithm of `config` whose learning step `make_learner(config, networks)`
    gives, as `Algorithm(init, update, ...)` (see the module docstring for the update)."""
    config.validate()
    networks = make_networks(config)
    learner = make_learner(config, networks)
    progress = progress or default_progress(config)
    policy, env, env_params = networks.policy, networks.env, networks.env_params

    def rollout_window(key, policy_params, batch):
        envs_after, traj = rollout.rollout(key, policy, policy_params, env, env_params, batch, config.num_steps)
        return envs_after, traj, traj

    collect = learner.collect or rollout_window

    def update(state: TrainState) -> tuple[TrainState, dict]:
        cfg = config.replace(**state.hparams)
        key, rollout_key, *learn_key = jax.random.split(state.key, 3 if learner.uses_key else 2)
        envs_after, traj, batch = collect(rollout_key, state.params["policy"], state.envs)
        params, opt_state, extra, stats = learner.learn(
            state.params, state.opt_state, state.extra, batch, cfg, learn_key[0] if learn_key else None
        )
        if config.normalize_obs:  # after learning: an update's data is judged by the statistics it was collected under
            window_obs = traj.obs[: config.num_steps].astype(jnp.float32)  # not a continuation's padding (REINFORCE)
            obs_stats = normalization.update_stats(params["policy"]["obs_stats"], window_obs)
            params = {**params, "policy": {**params["policy"], "obs_stats": obs_stats}}
        done_updates = state.update + 1
        metrics = update_metrics(config, progress, done_updates, traj, **stats)
        new_state = state.replace(
            params=params, opt_state=opt_state, envs=envs_after, extra=extra, key=key, update=done_updates
        )
        return new_state, metrics

    init = make_init(config, networks, learner.init, learner.uses_value)
    return Algorithm(init, update, config.num_updates, policy, env, env_params)


def make_train(config: Any, make_learner: Callable[[Any, Networks], Learner], progress: Callable[[dict], None] | None = None):
    """`train(key, hparams=None) -> (TrainState, metrics)` of `make_algorithm`: init, then
    `num_updates` updates in one scan; metrics arrays [num_updates]."""
    return train_fn(make_algorithm(config, make_learner, progress))


def values_and_advantages(
    value_apply: Callable[[jax.Array], jax.Array],
    traj: rollout.Trajectory,
    rewards: jax.Array,
    gamma: float | jax.Array,
    lam: float | jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """V(s_t), GAE(γ, λ) advantages and value targets for a window, all [T, B] (no gradient).

    V(s_t) and V(s'_t) come from one batched pass of `value_apply(obs [..., *obs_shape]) -> [...]`
    over [2, T, B, ...]; s'_t is the pre-reset final observation, so `returns.gae` bootstraps
    on truncation and not on termination. `rewards` [T, B] replace `traj.reward` (e.g. scaled).
    """
    values, next_values = jax.lax.stop_gradient(value_apply(jnp.stack([traj.obs, traj.next_obs])))
    advantages, targets = returns.gae(rewards, values, next_values, traj.terminated, traj.truncated, gamma, lam)
    return values, advantages, targets


def normalize_rewards(
    stats: normalization.RunningStats,
    discounted_return: jax.Array,
    rewards: jax.Array,
    dones: jax.Array,
    gamma: float | jax.Array,
) -> tuple[jax.Array, normalization.RunningStats, jax.Array]:
    """r_t / std(g), with g the running discounted return of each environment and its spread one
    statistic over every environment and step seen so far (this window merged in first).

    Args:
      stats: [] running statistic of g; discounted_return: [B] the carry of g.
      rewards, dones: [T, B].
    Returns:
      (scaled rewards [T, B], updated stats, the carry [B] for the next window).
    """
    g, discounted_return = returns.running_discounted_return(rewards, dones, gamma, discounted_return)
    stats = normalization.update_stats(stats, g)
    return normalization.scale(stats, rewards), stats, discounted_return
