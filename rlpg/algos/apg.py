"""Short-horizon analytic policy gradient (APG; with `critic=True`, SHAC) on gymnax envs with
transition gradients, as one jit-able `train(key)`.

Each update: from the carried states of `num_envs` auto-resetting environments (detached),
play `num_steps` = h steps with reparameterized actions a = μ_θ(s) + σ_θ ε and take one Adam
step on the pathwise gradient of

    L(θ) = −1/(B h) Σ_envs [Σ_{t<h} d_t r_t + Σ_{t<h} γ d_t b_t V_w(s'_t)]        (`pathwise.short_horizon_return`)

backpropagated through the env's dynamics (d_t restarts at each episode end; b_t marks the
window's last step and truncated steps, never terminated ones; V = 0 without the critic). With
the critic, V_w (a separate MLP) then takes `value_steps` full-batch Adam steps towards the
TD(λ) targets of the window (`returns.gae` with λ = `lam`, bootstrapping on truncation and at
the window's end). The env must support gymnax's `with_transition_gradients()`
(Pendulum-v1, MountainCarContinuous-v0, PointRobot-misc, Reacher-misc, Swimmer-misc).

`train(key, hparams)` is pure; the numeric fields (lr, critic_lr, gamma, lam, max_grad_norm) may
be overridden by a dict of traced arrays.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from rlpg import distributions, estimators, pathwise, returns, rollout
from rlpg._checks import check_in_interval, check_positive
from rlpg.algos.common import (
    Algorithm,
    RolloutSizes,
    check_hidden,
    check_run_sizes,
    checks_hparams,
    print_progress,
    train_fn,
    update_metrics,
)

NUMERIC_FIELDS = ("lr", "critic_lr", "gamma", "lam", "max_grad_norm")


@struct.dataclass
class Config(RolloutSizes):
    """APG/SHAC configuration. Static fields fix the program's shapes; numeric ones are traced."""

    env_id: str = struct.field(pytree_node=False, default="Pendulum-v1")
    num_envs: int = struct.field(pytree_node=False, default=32)
    num_steps: int = struct.field(pytree_node=False, default=32)  # the gradient horizon h
    total_timesteps: int = struct.field(pytree_node=False, default=300_000)
    hidden: tuple[int, ...] = struct.field(pytree_node=False, default=(32, 32))
    activation: str = struct.field(pytree_node=False, default="tanh")
    critic: bool = struct.field(pytree_node=False, default=False)
    value_steps: int = struct.field(pytree_node=False, default=16)
    log_every: int = struct.field(pytree_node=False, default=0)
    lr: float = 1e-2
    critic_lr: float = 1e-2
    gamma: float = 0.99
    lam: float = 0.95
    max_grad_norm: float = 1.0

    def validate(self) -> "Config":
        """Raise ValueError naming the first bad field; returns self."""
        check_run_sizes(self, ("num_envs", "num_steps", "total_timesteps", "value_steps"))
        check_hidden(self.hidden)
        check_positive("lr", self.lr)
        check_positive("critic_lr", self.critic_lr)
        check_in_interval("gamma", self.gamma, 0.0, 1.0)
        check_in_interval("lam", self.lam, 0.0, 1.0)
        check_positive("max_grad_norm", self.max_grad_norm)
        make_env(self.env_id)
        return self


def make_env(env_id: str) -> tuple[Any, Any]:
    """(env with transition gradients, env_params); ValueError naming `env_id` if it has none."""
    env, env_params = rollout.make_env(env_id)
    if not getattr(env, "supports_transition_gradients", False):
        raise ValueError(
            f"`env_id` {env_id!r} has no transition gradients; APG needs an env with "
            "`with_transition_gradients()` (e.g. Pendulum-v1, MountainCarContinuous-v0, Reacher-misc)."
        )
    return env.with_transition_gradients(), env_params


@struct.dataclass
class TrainState:
    params: dict  # {"policy": ..., "value": ...} ("value" only with the critic)
    opt_state: Any  # {"policy": ..., "value": ...}
    envs: rollout.EnvBatch
    key: jax.Array
    update: jax.Array  # [] int32
    hparams: dict


class _Episodes(struct.PyTreeNode):
    """What `rollout.episode_stats` reads: done, episode_return, episode_length [T, B]."""

    done: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array


def _episode_totals(envs: rollout.EnvBatch, rewards: jax.Array, done: jax.Array):
    """The running return and length carried across windows: finished totals [T, B] on done steps,
    and the EnvBatch's running sums after the window."""

    def step(carry, inputs):
        ret, length = carry
        reward, end = inputs
        ret, length = ret + reward, length + 1
        out = (jnp.where(end, ret, 0.0), jnp.where(end, length, 0))
        return (jnp.where(end, 0.0, ret), jnp.where(end, 0, length)), out

    carry, (finished_return, finished_length) = jax.lax.scan(
        step, (envs.episode_return, envs.episode_length), (rewards.astype(jnp.float32), done)
    )
    return carry, _Episodes(done=done, episode_return=finished_return, episode_length=finished_length)


def make_algorithm(config: Config, progress: Callable[[dict], None] | None = None) -> Algorithm:
    """APG/SHAC as `Algorithm(init, update, ...)`; see `make_train` for the metrics."""
    config.validate()
    env, env_params = make_env(config.env_id)
    policy = rollout.make_policy(env, env_params, config.hidden, config.activation)
    if policy.distribution is not distributions.gaussian:
        raise ValueError(f"`env_id` {config.env_id!r} must have a continuous (Box) action space for APG.")
    value_fn = rollout.policies.mlp_value(env.observation_space(env_params).shape, config.hidden, config.activation)
    progress = progress or print_progress

    def optimizers(cfg: Config) -> dict:
        make = lambda lr: optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(lr))
        return {"policy": make(cfg.lr), "value": make(cfg.critic_lr)}

    @checks_hparams(config, NUMERIC_FIELDS)
    def init(key: jax.Array, hparams: dict | None = None) -> TrainState:
        policy_key, value_key, env_key, run_key = jax.random.split(key, 4)
        params = {"policy": policy.init(policy_key)}
        if config.critic:
            params["value"] = value_fn.init(value_key)
        opt = optimizers(config.replace(**hparams))
        return TrainState(
            params=params,
            opt_state={name: opt[name].init(p) for name, p in params.items()},
            envs=rollout.reset(env_key, env, env_params, config.num_envs),
            key=run_key,
            update=jnp.zeros((), jnp.int32),
            hparams=hparams,
        )

    def policy_loss(policy_params, value_params, state: TrainState, keys: jax.Array, gamma):
        critic = (lambda obs: value_fn.apply(value_params, obs)) if config.critic else None
        objective, (obs, env_state), steps = jax.vmap(
            lambda k, o, s: pathwise.short_horizon_return(k, policy, policy_params, env, env_params, o, s, config.num_steps, gamma, critic)
        )(keys, state.envs.obs, state.envs.env_state)
        return -objective.mean() / config.num_steps, (obs, env_state, steps)

    def value_loss(value_params, obs, targets):
        return estimators.value_loss(value_fn.apply(value_params, obs), targets)

    def update(state: TrainState) -> tuple[TrainState, dict]:
        cfg = config.replace(**state.hparams)
        opt = optimizers(cfg)
        key, window_key = jax.random.split(state.key)
        keys = jax.random.split(window_key, config.num_envs)
        value_params = state.params.get("value")
        (loss, (obs, env_state, steps)), grad = jax.value_and_grad(policy_loss, has_aux=True)(
            state.params["policy"], value_params, state, keys, cfg.gamma
        )
        updates, policy_opt = opt["policy"].update(grad, state.opt_state["policy"], state.params["policy"])
        params = {"policy": optax.apply_updates(state.params["policy"], updates)}
        opt_state = {"policy": policy_opt}
        steps = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), jax.lax.stop_gradient(steps))  # [T, B, ...]
        done = jnp.logical_or(steps["terminated"], steps["truncated"])
        stats = {"loss": loss, "grad_norm": optax.tree.norm(grad)}
        if config.critic:
            values = value_fn.apply(value_params, steps["obs"])
            next_values = value_fn.apply(value_params, steps["next_obs"])
            _, targets = returns.gae(steps["reward"], values, next_values, steps["terminated"], steps["truncated"], cfg.gamma, cfg.lam)

            def value_step(carry, _):
                v_params, v_opt = carry
                v_loss, v_grad = jax.value_and_grad(value_loss)(v_params, steps["obs"], targets)
                v_updates, v_opt = opt["value"].update(v_grad, v_opt, v_params)
                return (optax.apply_updates(v_params, v_updates), v_opt), v_loss

            (params["value"], opt_state["value"]), v_losses = jax.lax.scan(
                value_step, (value_params, state.opt_state["value"]), None, length=config.value_steps
            )
            stats["value_loss"] = v_losses[-1]
        (ep_return, ep_length), episodes = _episode_totals(state.envs, steps["reward"], done)
        envs = rollout.EnvBatch(env_state=env_state, obs=obs, episode_return=ep_return, episode_length=ep_length)
        done_updates = state.update + 1
        metrics = update_metrics(config, progress, done_updates, episodes, **stats)
        return state.replace(params=params, opt_state=opt_state, envs=envs, key=key, update=done_updates), metrics

    return Algorithm(init, update, config.num_updates, policy, env, env_params)


def make_train(config: Config, progress: Callable[[dict], None] | None = None):
    """Build `train(key, hparams=None) -> (TrainState, metrics)`.

    `metrics` holds one entry per update (arrays [num_updates]): update, env_steps,
    episode_return, episode_length, episodes, loss (the negated window objective per step),
    grad_norm (of the policy's gradient, before clipping) and, with the critic, value_loss.
    """
    return train_fn(make_algorithm(config, progress))
