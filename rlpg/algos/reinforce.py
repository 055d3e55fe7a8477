"""REINFORCE (the score-function policy gradient) on gymnax, as one jit-able `train(key)`.

Each update: roll the policy out for `num_steps` in `num_envs` auto-resetting environments
(carried across updates, so no step is thrown away at a reset), weight each log-probability
by a return, take one optax step on

    L(θ, w) = −mean[stop_gradient(ŵ_t) log π_θ(a_t|s_t)] + c_v ½ mean[(V_w(s_t) − G_t)²] − c_H mean H[π_θ(·|s_t)].

Weights ŵ_t, by config:
- returns="reward_to_go": G_t = Σ_{k≥t} γ^{k−t} r_k to the end of the episode. With the learned
  value baseline, an episode still running at the end of the window (or cut by a time limit)
  is completed by V of the state it reached (GAE with λ = 1); otherwise only steps whose
  episode ends inside the window count.
- returns="total": R(τ) of the whole episode, counted for episodes that start and end inside
  the window.
- baseline: "none", "mean" (the batch mean of the returns), or "value" (a learned V_w(s_t)).
- normalize: standardize ŵ over the batch.
Rewards are multiplied by `reward_scale` before any return is formed (a value baseline fits
returns of order one more easily); reported episode returns stay in the env's units.

`train(key, hparams)` is pure: `jax.jit(jax.vmap(train))(keys)` runs many seeds, and the numeric
fields of the config (lr, gamma, value_coef, ent_coef, max_grad_norm) may be overridden by a
dict of (traced) arrays, `jax.vmap(train)(keys, {"lr": lrs})`, to sweep them in one compile.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

from rlpg import estimators, returns, rollout
from rlpg._checks import check_in_interval, check_positive
from rlpg.algos import actor_critic
from rlpg.algos.common import (
    Algorithm,
    RolloutSizes,
    check_hidden,
    checks_hparams,
    check_run_sizes,
    print_progress,
    train_fn,
    update_metrics,
)

RETURNS = ("reward_to_go", "total")
BASELINES = ("none", "mean", "value")
NUMERIC_FIELDS = ("lr", "gamma", "value_coef", "ent_coef", "max_grad_norm", "reward_scale")


@struct.dataclass
class Config(RolloutSizes):
    """REINFORCE configuration. Static fields fix the program's shapes; numeric ones are traced."""

    env_id: str = struct.field(pytree_node=False, default="CartPole-v1")
    num_envs: int = struct.field(pytree_node=False, default=8)
    num_steps: int = struct.field(pytree_node=False, default=500)
    total_timesteps: int = struct.field(pytree_node=False, default=500_000)
    policy: str = struct.field(pytree_node=False, default="mlp")  # "mlp" or "linear" (rollout.make_policy)
    hidden: tuple[int, ...] = struct.field(pytree_node=False, default=(64, 64))
    activation: str = struct.field(pytree_node=False, default="tanh")
    returns: str = struct.field(pytree_node=False, default="reward_to_go")
    baseline: str = struct.field(pytree_node=False, default="value")
    normalize: bool = struct.field(pytree_node=False, default=True)
    log_every: int = struct.field(pytree_node=False, default=0)
    lr: float = 3e-3
    gamma: float = 0.99
    value_coef: float = 0.5
    ent_coef: float = 0.0
    max_grad_norm: float = 0.5
    reward_scale: float = 1.0  # rewards are multiplied by this before returns (metrics stay unscaled)

    def validate(self) -> "Config":
        """Raise ValueError naming the first bad field; returns self."""
        check_run_sizes(self, ("num_envs", "num_steps", "total_timesteps"))
        check_hidden(self.hidden)
        if self.policy not in rollout.POLICY_KINDS:
            raise ValueError(f"`policy` must be one of {rollout.POLICY_KINDS}; got {self.policy!r}.")
        if self.returns not in RETURNS:
            raise ValueError(f"`returns` must be one of {RETURNS}; got {self.returns!r}.")
        if self.baseline not in BASELINES:
            raise ValueError(f"`baseline` must be one of {BASELINES}; got {self.baseline!r}.")
        check_positive("lr", self.lr)
        check_in_interval("gamma", self.gamma, 0.0, 1.0)
        check_in_interval("value_coef", self.value_coef, 0.0, float("inf"))
        check_in_interval("ent_coef", self.ent_coef, 0.0, float("inf"))
        check_positive("max_grad_norm", self.max_grad_norm)
        check_positive("reward_scale", self.reward_scale)
        env, env_params = rollout.make_env(self.env_id)  # unknown ids fail here, naming close ones
        rollout.make_policy(env, env_params, self.hidden, self.activation, self.policy)  # and policies that don't fit the env
        return self


@struct.dataclass
class TrainState:
    """Everything a run carries from one update to the next."""

    params: dict  # {"policy": ..., "value": ...} ("value" only with the learned baseline)
    opt_state: Any
    envs: rollout.EnvBatch
    key: jax.Array
    update: jax.Array  # [] int32, updates done so far
    hparams: dict  # overrides of the numeric config fields (traced; {} for none)


def _weights_and_masks(config: Config, traj: rollout.Trajectory, values, next_values, gamma, reward_scale):
    """(weights ŵ, value targets, mask) [T, B] for the configured variant."""
    done = traj.done
    reward = traj.reward * reward_scale
    if config.returns == "reward_to_go" and config.baseline == "value":
        advantages, targets = returns.gae(reward, values, next_values, traj.terminated, traj.truncated, gamma, 1.0)
        mask = jnp.ones_like(traj.reward)
        return estimators.reinforce_weights(advantages, None, config.normalize, mask), targets, mask
    if config.returns == "reward_to_go":
        g = returns.reward_to_go(reward, done, gamma)
        mask = returns.episode_ends_mask(done)
    else:
        g = returns.total_return(reward, done, gamma)
        mask = returns.episode_ends_mask(done) * returns.episode_starts_mask(done)
    baseline = {
        "none": None,
        "mean": estimators.batch_mean_baseline(g, mask),
        "value": values,
    }[config.baseline]
    return estimators.reinforce_weights(g, baseline, config.normalize, mask), g, mask


def make_algorithm(config: Config, progress: Callable[[dict], None] | None = None) -> Algorithm:
    """REINFORCE as `Algorithm(init, update, ...)`; see `make_train` for the metrics and progress."""
    config.validate()
    env, env_params = rollout.make_env(config.env_id)
    policy = rollout.make_policy(env, env_params, config.hidden, config.activation, config.policy)
    obs_shape = env.observation_space(env_params).shape
    value_fn = rollout.policies.mlp_value(obs_shape, config.hidden, config.activation)
    use_value = config.baseline == "value"
    progress = progress or print_progress

    def optimizer(cfg: Config):  # policy and value clipped apart (a large value loss must not shrink the policy step)
        return actor_critic.adam(cfg.lr, cfg.max_grad_norm)

    @checks_hparams(config, NUMERIC_FIELDS)
    def init(key: jax.Array, hparams: dict | None = None) -> TrainState:
        policy_key, value_key, env_key, run_key = jax.random.split(key, 4)
        params = {"policy": policy.init(policy_key)}
        if use_value:
            params["value"] = value_fn.init(value_key)
        return TrainState(
            params=params,
            opt_state=optimizer(config.replace(**hparams)).init(params),
            envs=rollout.reset(env_key, env, env_params, config.num_envs),
            key=run_key,
            update=jnp.zeros((), jnp.int32),
            hparams=hparams,
        )

    def loss_fn(params, traj: rollout.Trajectory, cfg: Config):
        dist = policy.apply(params["policy"], traj.obs)
        log_prob = policy.distribution.log_prob(dist, traj.action)
        entropy = policy.distribution.entropy(dist)
        if use_value:  # V(s'_t) is only a target: no gradient, so no backward pass over it (~20% faster)
            values = value_fn.apply(params["value"], traj.obs)
            next_values = value_fn.apply(jax.lax.stop_gradient(params["value"]), traj.next_obs)
        else:
            values = next_values = jnp.zeros_like(traj.reward)
        weights, targets, mask = _weights_and_masks(
            config, traj, jax.lax.stop_gradient(values), jax.lax.stop_gradient(next_values), cfg.gamma, cfg.reward_scale
        )
        policy_loss = estimators.reinforce_loss(log_prob, weights, mask)
        v_loss = estimators.value_loss(values, targets, mask) if use_value else jnp.zeros(())
        ent = estimators.entropy_bonus(entropy, mask)
        loss = policy_loss + cfg.value_coef * v_loss - cfg.ent_coef * ent
        return loss, {"policy_loss": policy_loss, "value_loss": v_loss, "entropy": ent}

    def update(state: TrainState) -> tuple[TrainState, dict]:
        cfg = config.replace(**state.hparams)
        key, rollout_key = jax.random.split(state.key)
        envs, traj = rollout.rollout(
            rollout_key, policy, state.params["policy"], env, env_params, state.envs, config.num_steps
        )
        params, opt_state, stats = actor_critic.optimizer_step(
            optimizer(cfg), loss_fn, state.params, state.opt_state, traj, cfg
        )
        done_updates = state.update + 1
        metrics = update_metrics(config, progress, done_updates, traj, **stats)
        new_state = state.replace(params=params, opt_state=opt_state, envs=envs, key=key, update=done_updates)
        return new_state, metrics

    return Algorithm(init, update, config.num_updates, policy, env, env_params)


def make_train(config: Config, progress: Callable[[dict], None] | None = None):
    """Build `train(key, hparams=None) -> (TrainState, metrics)`.

    `metrics` holds one entry per update (arrays [num_updates]): update, env_steps,
    episode_return, episode_length, episodes, loss, policy_loss, value_loss, entropy, grad_norm
    (of the policy's gradient, before clipping).
    With `config.log_every = K > 0`, every K updates `progress(metrics_of_that_update)` is called
    from inside the compiled program (default: print a line); under vmap it is called once per
    batch element.
    """
    return train_fn(make_algorithm(config, progress))
