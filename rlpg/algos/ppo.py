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
- `normalize_obs` (of every on-policy algorithm, `rlpg.algos.on_policy`): the policy
  standardizes its input with a running mean/variance kept in its parameters, `params["policy"] = {"net": ..., "obs_stats": RunningStats}` (see
  `normalization.normalize_observations`), so `rollout.evaluate` and `rlpg.load_policy`
  standardize observations exactly as training did. The value network sees the same
  standardized observations. The statistics merge each rollout's observations after the update (the data of an update is
  always judged with the statistics it was collected under).
- `normalize_reward`: rewards are divided by the running std of the discounted return.
Reported episode returns stay in the env's units.

`train(key, hparams)` is pure: `jax.jit(jax.vmap(train))(keys)` runs many seeds, and the numeric
fields (lr, gamma, lam, clip_eps, value_coef, ent_coef, max_grad_norm) may be overridden by a
dict of traced arrays, `jax.vmap(train)(keys, {"lr": lrs})`. With `anneal_lr` a swept lr is the
starting point of each run's linear schedule.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import struct

from rlpg import estimators, normalization, returns
from rlpg.algos import on_policy, optim
from rlpg.algos.common import OnPolicyConfig, numeric, numeric_fields, static


@struct.dataclass
class Config(OnPolicyConfig):
    """PPO configuration. Static fields fix the program's shapes; numeric ones are traced."""

    total_timesteps: int = static(150_000)
    num_epochs: int = static(4)
    """passes over each batch"""
    num_minibatches: int = static(4)
    """minibatches per pass (must divide num_envs × num_steps)"""
    normalize_advantages: bool = static(True)
    """standardize the advantages of each minibatch"""
    clip_value: bool = static(False)
    """clipped value loss"""
    anneal_lr: bool = static(False)
    """decay the learning rate linearly to 0 (a swept lr is each run's starting point)"""
    normalize_reward: bool = static(False)
    """divide rewards by the running std of the discounted return"""
    lr: float = numeric(2.5e-3, positive=True)
    lam: float = numeric(0.95, 0.0, 1.0)
    """GAE λ"""
    clip_eps: float = numeric(0.2, positive=True)
    """clipping range ε of the probability ratio (and of the value, with clip_value)"""
    value_coef: float = numeric(0.5)
    """weight of the value loss"""
    ent_coef: float = numeric(0.0)
    """weight of the entropy bonus"""

    @property
    def minibatch_size(self) -> int:
        return self.steps_per_update // self.num_minibatches

    def validate(self) -> "Config":
        """Raise ValueError naming the first bad field; returns self."""
        super().validate()
        if self.steps_per_update % self.num_minibatches:
            raise ValueError(
                f"`num_minibatches` ({self.num_minibatches}) must divide num_envs × num_steps "
                f"= {self.num_envs} × {self.num_steps} = {self.steps_per_update}."
            )
        return self


NUMERIC_FIELDS = numeric_fields(Config)


def make_learner(config: Config, networks: on_policy.Networks) -> on_policy.Learner:
    """PPO's learning step: (normalized rewards,) GAE advantages, then num_epochs passes of
    minibatch Adam steps on the clipped surrogate. extra = {"return_stats": RunningStats [] of the
    discounted return, "discounted_return": [num_envs] its carry} (used with normalize_reward)."""
    policy = networks.policy
    optimizer_steps = config.num_updates * config.num_epochs * config.num_minibatches

    def optimizer(cfg: Config):
        return optim.adam(cfg.lr, cfg.max_grad_norm, optimizer_steps if config.anneal_lr else 0)

    def init(params, cfg: Config):
        extra = {
            "return_stats": normalization.init_stats(),
            "discounted_return": jnp.zeros((config.num_envs,), jnp.float32),
        }
        return optimizer(cfg).init(params), extra

    def loss_fn(params, batch: dict, cfg: Config):
        dist = policy.apply(params["policy"], batch["obs"])
        log_prob = policy.distribution.log_prob(dist, batch["action"])
        advantages = returns.normalize(batch["advantage"]) if config.normalize_advantages else batch["advantage"]
        policy_loss = estimators.ppo_clip_loss(log_prob, batch["log_prob"], advantages, cfg.clip_eps)
        values = networks.value(params, batch["obs"])
        if config.clip_value:
            v_loss = estimators.clipped_value_loss(values, batch["value"], batch["target"], cfg.clip_eps)
        else:
            v_loss = estimators.value_loss(values, batch["target"])
        ent = estimators.entropy_bonus(policy.distribution.entropy(dist))
        loss = policy_loss + cfg.value_coef * v_loss - cfg.ent_coef * ent
        aux = {"policy_loss": policy_loss, "value_loss": v_loss, "entropy": ent}
        return loss, {**aux, **estimators.ratio_diagnostics(log_prob, batch["log_prob"], cfg.clip_eps)}

    def sgd_step(cfg: Config, carry, batch: dict):
        params, opt_state, stats = optim.optimizer_step(optimizer(cfg), loss_fn, *carry, batch, cfg)
        return (params, opt_state), stats

    def epoch(cfg: Config, data: dict, carry, key):
        """One pass over the shuffled batch: [N, ...] -> num_minibatches × [N / M, ...]."""
        minibatches = optim.minibatches(key, data, config.num_minibatches)
        return jax.lax.scan(lambda c, mb: sgd_step(cfg, c, mb), carry, minibatches)

    def learn(params, opt_state, extra, traj, cfg: Config, key):
        rewards = traj.reward
        if config.normalize_reward:
            rewards, return_stats, discounted_return = on_policy.normalize_rewards(
                extra["return_stats"], extra["discounted_return"], traj.reward, traj.done, cfg.gamma
            )
            extra = {"return_stats": return_stats, "discounted_return": discounted_return}
        values, advantages, targets = on_policy.values_and_advantages(
            lambda obs: networks.value(params, obs), traj, rewards, cfg.gamma, cfg.lam
        )
        data = {
            "obs": traj.obs, "action": traj.action, "log_prob": traj.log_prob,
            "value": values, "advantage": advantages, "target": targets,
        }
        data = jax.tree.map(lambda x: x.reshape((config.steps_per_update,) + x.shape[2:]), data)
        (params, opt_state), stats = jax.lax.scan(
            lambda c, k: epoch(cfg, data, c, k), (params, opt_state), jax.random.split(key, config.num_epochs)
        )
        # the losses and diagnostics: means over the epochs' minibatch steps
        return params, opt_state, extra, jax.tree.map(jnp.mean, stats)

    return on_policy.Learner(init=init, learn=learn, uses_key=True)


def make_algorithm(config: Config, progress: Callable[[dict], None] | None = None):
    """PPO as `Algorithm(init, update, ...)`; see `make_train` for the metrics and progress."""
    return on_policy.make_algorithm(config, make_learner, progress)


def make_train(config: Config, progress: Callable[[dict], None] | None = None):
    """Build `train(key, hparams=None) -> (TrainState, metrics)`.

    `metrics` holds one entry per update (arrays [num_updates]): update, env_steps,
    episode_return, episode_length, episodes, and, averaged over the update's
    num_epochs × num_minibatches steps, loss, policy_loss, value_loss, entropy, grad_norm
    (of the policy's gradient, before clipping), approx_kl and clip_fraction.
    With `config.log_every = K > 0`, every K updates `progress(metrics_of_that_update)` is called
    from inside the compiled program (default: print a line).
    """
    return on_policy.make_train(config, make_learner, progress)
