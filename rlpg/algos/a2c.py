"""Advantage actor-critic (A2C): n-step rollouts, a learned V_w, GAE(γ, λ), one Adam step each.

Each update: roll the policy out for `num_steps` in `num_envs` auto-resetting environments,
compute V(s_t) and V(s'_t) in one batched pass and GAE(γ, λ) advantages Â_t and targets
Ĝ_t = Â_t + V(s_t) (bootstrapping on truncation and at the window's end, not on termination),
then one optax step on

    L(θ, w) = −mean[stop_gradient(Â_t) log π_θ(a_t|s_t)] + c_v ½ mean[(V_w(s_t) − Ĝ_t)²] − c_H mean H[π_θ(·|s_t)],

the REINFORCE surrogate with the critic's advantages as weights (`estimators.reinforce_loss`).
Policy and value are separate networks, each gradient clipped to global norm `max_grad_norm`;
`anneal_lr` decays the learning rate linearly to 0 (a swept lr is each run's starting point).

`train(key, hparams)` is pure and vmappable over keys and the numeric fields (lr, gamma, lam,
value_coef, ent_coef, max_grad_norm): `jax.vmap(train)(keys, {"lr": lrs})`.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

from rlpg import estimators, rollout
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

NUMERIC_FIELDS = ("lr", "gamma", "lam", "value_coef", "ent_coef", "max_grad_norm")


@struct.dataclass
class Config(RolloutSizes):
    """A2C configuration. Static fields fix the program's shapes; numeric ones are traced."""

    env_id: str = struct.field(pytree_node=False, default="CartPole-v1")
    num_envs: int = struct.field(pytree_node=False, default=16)
    num_steps: int = struct.field(pytree_node=False, default=16)
    total_timesteps: int = struct.field(pytree_node=False, default=500_000)
    hidden: tuple[int, ...] = struct.field(pytree_node=False, default=(64, 64))
    activation: str = struct.field(pytree_node=False, default="tanh")
    normalize_advantages: bool = struct.field(pytree_node=False, default=True)
    anneal_lr: bool = struct.field(pytree_node=False, default=True)
    log_every: int = struct.field(pytree_node=False, default=0)
    lr: float = 3e-3
    gamma: float = 0.99
    lam: float = 0.95
    value_coef: float = 0.5
    ent_coef: float = 0.0
    max_grad_norm: float = 0.5

    def validate(self) -> "Config":
        """Raise ValueError naming the first bad field; returns self."""
        check_run_sizes(self, ("num_envs", "num_steps", "total_timesteps"))
        check_hidden(self.hidden)
        check_positive("lr", self.lr)
        check_in_interval("gamma", self.gamma, 0.0, 1.0)
        check_in_interval("lam", self.lam, 0.0, 1.0)
        check_in_interval("value_coef", self.value_coef, 0.0, float("inf"))
        check_in_interval("ent_coef", self.ent_coef, 0.0, float("inf"))
        check_positive("max_grad_norm", self.max_grad_norm)
        rollout.make_env(self.env_id)  # unknown ids fail here, naming close ones
        return self


@struct.dataclass
class TrainState:
    """Everything a run carries from one update to the next."""

    params: dict  # {"policy": ..., "value": ...}
    opt_state: Any
    envs: rollout.EnvBatch
    key: jax.Array
    update: jax.Array  # [] int32, updates done so far
    hparams: dict  # overrides of the numeric config fields (traced; {} for none)


def make_algorithm(config: Config, progress: Callable[[dict], None] | None = None) -> Algorithm:
    """A2C as `Algorithm(init, update, ...)`; see `make_train` for the metrics and progress."""
    config.validate()
    env, env_params = rollout.make_env(config.env_id)
    obs_shape = env.observation_space(env_params).shape
    policy = rollout.make_policy(env, env_params, config.hidden, config.activation)
    value_fn = rollout.policies.mlp_value(obs_shape, config.hidden, config.activation)
    progress = progress or print_progress

    def optimizer(cfg: Config):
        return actor_critic.adam(cfg.lr, cfg.max_grad_norm, config.num_updates if config.anneal_lr else 0)

    @checks_hparams(config, NUMERIC_FIELDS)
    def init(key: jax.Array, hparams: dict | None = None) -> TrainState:
        policy_key, value_key, env_key, run_key = jax.random.split(key, 4)
        params = {"policy": policy.init(policy_key), "value": value_fn.init(value_key)}
        return TrainState(
            params=params,
            opt_state=optimizer(config.replace(**hparams)).init(params),
            envs=rollout.reset(env_key, env, env_params, config.num_envs),
            key=run_key,
            update=jnp.zeros((), jnp.int32),
            hparams=hparams,
        )

    def loss_fn(params, traj: rollout.Trajectory, advantages, targets, cfg: Config):
        dist = policy.apply(params["policy"], traj.obs)
        log_prob = policy.distribution.log_prob(dist, traj.action)
        weights = estimators.reinforce_weights(advantages, None, config.normalize_advantages)
        policy_loss = estimators.reinforce_loss(log_prob, weights)
        v_loss = estimators.value_loss(value_fn.apply(params["value"], traj.obs), targets)
        ent = estimators.entropy_bonus(policy.distribution.entropy(dist))
        loss = policy_loss + cfg.value_coef * v_loss - cfg.ent_coef * ent
        return loss, {"policy_loss": policy_loss, "value_loss": v_loss, "entropy": ent}

    def update(state: TrainState) -> tuple[TrainState, dict]:
        cfg = config.replace(**state.hparams)
        key, rollout_key = jax.random.split(state.key)
        envs, traj = rollout.rollout(
            rollout_key, policy, state.params["policy"], env, env_params, state.envs, config.num_steps
        )
        _, advantages, targets = actor_critic.values_and_advantages(
            lambda obs: value_fn.apply(state.params["value"], obs), traj, traj.reward, cfg.gamma, cfg.lam
        )
        params, opt_state, stats = actor_critic.optimizer_step(
            optimizer(cfg), loss_fn, state.params, state.opt_state, traj, advantages, targets, cfg
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
    (of the policy's gradient, before clipping). With `config.log_every = K > 0`, every K
    updates `progress(metrics_of_that_update)` is called from inside the compiled program.
    """
    return train_fn(make_algorithm(config, progress))
