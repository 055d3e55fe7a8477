"""Proximal policy optimization (clipped surrogate) on gymnax, as one jit-able `train(key)`.

Each update: roll the policy out for `num_steps` in `num_envs` auto-resetting environments,
compute V(s_t) and V(s'_t) in one batched pass and GAE(γ, λ) advantages (bootstrapping on
truncation, not on termination), then `num_epochs` passes over the batch, each shuffled into
`num_minibatches` minibatches, with one Adam step per minibatch on

    L(θ, w) = −mean[min(ρ A, clip(ρ, 1 − ε, 1 + ε) A)] + c_v L_V(w) − c_H mean H[π_θ(·|s)],

ρ = π_θ(a|s) / π_old(a|s), A standardized per minibatch, L_V = ½ mean (V_w − G)² (or its
clipped form, `clip_value`). Policy and value are separate networks, each gradient clipped to
global norm `max_grad_norm`; `anneal_lr` decays the learning rate linearly to 0.

Normalization, each ONE running statistic over every environment and step (not one per env):
- `normalize_obs`: the policy standardizes its input with a running mean/variance kept in its
  parameters, `params["policy"] = {"net": ..., "obs_stats": RunningStats}` (see
  `normalization.normalize_observations`), so `rollout.evaluate` and `rlpg.load_policy` act
  exactly as in training. The value network sees the same standardized observations. The
  statistics merge each rollout's observations after the update (the data of an update is
  always judged with the statistics it was collected under).
- `normalize_reward`: rewards are divided by the running std of the discounted return.
Reported episode returns stay in the env's units.

`train(key, hparams)` is pure: `jax.jit(jax.vmap(train))(keys)` runs many seeds, and the numeric
fields (lr, gamma, lam, clip_eps, value_coef, ent_coef, max_grad_norm) may be overridden by a
dict of traced arrays, `jax.vmap(train)(keys, {"lr": lrs})`. With `anneal_lr` a swept lr is the
starting point of each run's linear schedule.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

from rlpg import estimators, normalization, returns, rollout
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

NUMERIC_FIELDS = ("lr", "gamma", "lam", "clip_eps", "value_coef", "ent_coef", "max_grad_norm")


@struct.dataclass
class Config(RolloutSizes):
    """PPO configuration. Static fields fix the program's shapes; numeric ones are traced."""

    env_id: str = struct.field(pytree_node=False, default="CartPole-v1")
    num_envs: int = struct.field(pytree_node=False, default=8)
    num_steps: int = struct.field(pytree_node=False, default=128)
    total_timesteps: int = struct.field(pytree_node=False, default=150_000)
    num_epochs: int = struct.field(pytree_node=False, default=4)
    num_minibatches: int = struct.field(pytree_node=False, default=4)
    hidden: tuple[int, ...] = struct.field(pytree_node=False, default=(64, 64))
    activation: str = struct.field(pytree_node=False, default="tanh")
    # Box action spaces: "clip" Gaussian samples into the box, or "tanh"-squash them (rollout.make_policy)
    continuous_actions: str = struct.field(pytree_node=False, default="clip")
    normalize_advantages: bool = struct.field(pytree_node=False, default=True)
    clip_value: bool = struct.field(pytree_node=False, default=False)
    anneal_lr: bool = struct.field(pytree_node=False, default=False)
    normalize_obs: bool = struct.field(pytree_node=False, default=False)
    normalize_reward: bool = struct.field(pytree_node=False, default=False)
    log_every: int = struct.field(pytree_node=False, default=0)
    lr: float = 2.5e-3
    gamma: float = 0.99
    lam: float = 0.95
    clip_eps: float = 0.2
    value_coef: float = 0.5
    ent_coef: float = 0.0
    max_grad_norm: float = 0.5

    @property
    def minibatch_size(self) -> int:
        return self.steps_per_update // self.num_minibatches

    def validate(self) -> "Config":
        """Raise ValueError naming the first bad field; returns self."""
        check_run_sizes(self, ("num_envs", "num_steps", "total_timesteps", "num_epochs", "num_minibatches"))
        if self.steps_per_update % self.num_minibatches:
            raise ValueError(
                f"`num_minibatches` ({self.num_minibatches}) must divide num_envs × num_steps "
                f"= {self.num_envs} × {self.num_steps} = {self.steps_per_update}."
            )
        check_hidden(self.hidden)
        check_positive("lr", self.lr)
        check_in_interval("gamma", self.gamma, 0.0, 1.0)
        check_in_interval("lam", self.lam, 0.0, 1.0)
        check_positive("clip_eps", self.clip_eps)
        check_in_interval("value_coef", self.value_coef, 0.0, float("inf"))
        check_in_interval("ent_coef", self.ent_coef, 0.0, float("inf"))
        check_positive("max_grad_norm", self.max_grad_norm)
        env, env_params = rollout.make_env(self.env_id)  # unknown ids fail here, naming close ones
        rollout.make_policy(env, env_params, continuous_actions=self.continuous_actions)  # and "tanh" on unbounded boxes
        return self


@struct.dataclass
class TrainState:
    """Everything a run carries from one update to the next."""

    params: dict  # {"policy": ..., "value": ...}; with normalize_obs, policy = {"net", "obs_stats"}
    opt_state: Any
    envs: rollout.EnvBatch
    return_stats: normalization.RunningStats  # [] spread of the discounted return (normalize_reward)
    discounted_return: jax.Array  # [num_envs] running discounted return of each env (normalize_reward)
    key: jax.Array
    update: jax.Array  # [] int32, updates done so far
    hparams: dict  # overrides of the numeric config fields (traced; {} for none)


def make_algorithm(config: Config, progress: Callable[[dict], None] | None = None) -> Algorithm:
    """PPO as `Algorithm(init, update, ...)`; see `make_train` for the metrics and progress."""
    config.validate()
    env, env_params = rollout.make_env(config.env_id)
    obs_shape = env.observation_space(env_params).shape
    policy = rollout.make_policy(env, env_params, config.hidden, config.activation, continuous_actions=config.continuous_actions)
    if config.normalize_obs:
        policy = normalization.normalize_observations(policy, obs_shape)
    value_fn = rollout.policies.mlp_value(obs_shape, config.hidden, config.activation)
    progress = progress or print_progress
    optimizer_steps = config.num_updates * config.num_epochs * config.num_minibatches

    def optimizer(cfg: Config):
        return actor_critic.adam(cfg.lr, cfg.max_grad_norm, optimizer_steps if config.anneal_lr else 0)

    def value_apply(params, obs):
        """V(s) [...] for obs [..., *obs_shape], standardized as the policy does."""
        if config.normalize_obs:
            obs = normalization.standardize(params["policy"]["obs_stats"], obs.astype(jnp.float32))
        return value_fn.apply(params["value"], obs)

    @checks_hparams(config, NUMERIC_FIELDS)
    def init(key: jax.Array, hparams: dict | None = None) -> TrainState:
        policy_key, value_key, env_key, run_key = jax.random.split(key, 4)
        params = {"policy": policy.init(policy_key), "value": value_fn.init(value_key)}
        return TrainState(
            params=params,
            opt_state=optimizer(config.replace(**hparams)).init(params),
            envs=rollout.reset(env_key, env, env_params, config.num_envs),
            return_stats=normalization.init_stats(),
            discounted_return=jnp.zeros((config.num_envs,), jnp.float32),
            key=run_key,
            update=jnp.zeros((), jnp.int32),
            hparams=hparams,
        )

    def loss_fn(params, batch: dict, cfg: Config):
        dist = policy.apply(params["policy"], batch["obs"])
        log_prob = policy.distribution.log_prob(dist, batch["action"])
        advantages = returns.normalize(batch["advantage"]) if config.normalize_advantages else batch["advantage"]
        policy_loss = estimators.ppo_clip_loss(log_prob, batch["log_prob"], advantages, cfg.clip_eps)
        values = value_apply(params, batch["obs"])
        if config.clip_value:
            v_loss = estimators.clipped_value_loss(values, batch["value"], batch["target"], cfg.clip_eps)
        else:
            v_loss = estimators.value_loss(values, batch["target"])
        ent = estimators.entropy_bonus(policy.distribution.entropy(dist))
        loss = policy_loss + cfg.value_coef * v_loss - cfg.ent_coef * ent
        aux = {"policy_loss": policy_loss, "value_loss": v_loss, "entropy": ent}
        return loss, {**aux, **estimators.ratio_diagnostics(log_prob, batch["log_prob"], cfg.clip_eps)}

    def sgd_step(cfg: Config, carry, batch: dict):
        params, opt_state, stats = actor_critic.optimizer_step(optimizer(cfg), loss_fn, *carry, batch, cfg)
        return (params, opt_state), stats

    def epoch(cfg: Config, data: dict, carry, key):
        """One pass over the shuffled batch: [N, ...] -> num_minibatches × [N / M, ...]."""
        minibatches = actor_critic.minibatches(key, data, config.num_minibatches)
        return jax.lax.scan(lambda c, mb: sgd_step(cfg, c, mb), carry, minibatches)

    def update(state: TrainState) -> tuple[TrainState, dict]:
        cfg = config.replace(**state.hparams)
        key, rollout_key, epoch_key = jax.random.split(state.key, 3)
        envs, traj = rollout.rollout(
            rollout_key, policy, state.params["policy"], env, env_params, state.envs, config.num_steps
        )
        rewards, return_stats, discounted_return = traj.reward, state.return_stats, state.discounted_return
        if config.normalize_reward:
            rewards, return_stats, discounted_return = actor_critic.normalize_rewards(
                return_stats, discounted_return, traj.reward, traj.done, cfg.gamma
            )
        values, advantages, targets = actor_critic.values_and_advantages(
            lambda obs: value_apply(state.params, obs), traj, rewards, cfg.gamma, cfg.lam
        )
        data = {
            "obs": traj.obs, "action": traj.action, "log_prob": traj.log_prob,
            "value": values, "advantage": advantages, "target": targets,
        }
        data = jax.tree.map(lambda x: x.reshape((config.steps_per_update,) + x.shape[2:]), data)
        (params, opt_state), stats = jax.lax.scan(
            lambda c, k: epoch(cfg, data, c, k),
            (state.params, state.opt_state),
            jax.random.split(epoch_key, config.num_epochs),
        )
        if config.normalize_obs:
            obs_stats = normalization.update_stats(params["policy"]["obs_stats"], traj.obs.astype(jnp.float32))
            params = {**params, "policy": {**params["policy"], "obs_stats": obs_stats}}
        done_updates = state.update + 1
        # the losses and diagnostics: means over the epochs' minibatch steps
        metrics = update_metrics(config, progress, done_updates, traj, **jax.tree.map(jnp.mean, stats))
        new_state = state.replace(
            params=params, opt_state=opt_state, envs=envs, return_stats=return_stats,
            discounted_return=discounted_return, key=key, update=done_updates,
        )
        return new_state, metrics

    return Algorithm(init, update, config.num_updates, policy, env, env_params)


def make_train(config: Config, progress: Callable[[dict], None] | None = None):
    """Build `train(key, hparams=None) -> (TrainState, metrics)`.

    `metrics` holds one entry per update (arrays [num_updates]): update, env_steps,
    episode_return, episode_length, episodes, and, averaged over the update's
    num_epochs × num_minibatches steps, loss, policy_loss, value_loss, entropy, grad_norm
    (of the policy's gradient, before clipping), approx_kl and clip_fraction.
    With `config.log_every = K > 0`, every K updates `progress(metrics_of_that_update)` is called
    from inside the compiled program (default: print a line).
    """
    return train_fn(make_algorithm(config, progress))
