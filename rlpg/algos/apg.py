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
from flax import struct

from rlpg import envs, estimators, pathwise, returns, rollout
from rlpg.algos import on_policy, optim
from rlpg.algos.common import (
    Algorithm,
    OnPolicyConfig,
    TrainState,
    default_progress,
    numeric,
    numeric_fields,
    static,
    train_fn,
    update_metrics,
)


@struct.dataclass
class Config(OnPolicyConfig):
    """APG/SHAC configuration. Static fields fix the program's shapes; numeric ones are traced."""

    env_id: str = static("Pendulum-v1")
    num_envs: int = static(32)
    num_steps: int = static(32)
    """steps per environment per update: the gradient horizon h"""
    total_timesteps: int = static(300_000)
    hidden: tuple[int, ...] = static((32, 32))
    critic: bool = static(False)
    """bootstrap each short-horizon window with a learned V at the cut (SHAC)"""
    value_steps: int = static(16)
    """full-batch Adam steps of the critic per update"""
    lr: float = numeric(1e-2, positive=True)
    critic_lr: float = numeric(1e-2, positive=True)
    """Adam learning rate of the critic"""
    lam: float = numeric(0.95, 0.0, 1.0)
    """TD(λ) of the critic's targets"""
    max_grad_norm: float = numeric(1.0, positive=True)

    def validate(self) -> "Config":
        """Raise ValueError naming the first bad field; returns self."""
        super().validate()
        if self.normalize_obs:
            raise ValueError("`normalize_obs` must be False for APG: its update keeps no observation statistics.")
        return self

    def check_env(self, env: Any, env_params: Any) -> None:
        _check_transition_gradients(self.env_id, env)
        super().check_env(env, env_params)
        if not hasattr(env.action_space(env_params), "low") or self.continuous_actions != "clip":
            raise ValueError(
                f"`env_id` {self.env_id!r} must have a continuous (Box) action space for APG, acted in by a "
                f"Gaussian (continuous_actions='clip'); got continuous_actions={self.continuous_actions!r}."
            )


NUMERIC_FIELDS = numeric_fields(Config)


def make_env(env_id: str) -> tuple[Any, Any]:
    """(env with transition gradients, env_params); ValueError naming `env_id` if it has none."""
    env, env_params = envs.make(env_id)
    _check_transition_gradients(env_id, env)
    return env.with_transition_gradients(), env_params


def _check_transition_gradients(env_id: str, env: Any) -> None:
    if not getattr(env, "supports_transition_gradients", False):
        raise ValueError(
            f"`env_id` {env_id!r} has no transition gradients; APG needs an env with "
            "`with_transition_gradients()` (e.g. Pendulum-v1, MountainCarContinuous-v0, Reacher-misc)."
        )


class _Episodes(struct.PyTreeNode):
    """What `rollout.episode_stats` reads: done, episode_return, episode_length [T, B]."""

    done: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array


def _episode_totals(envs: rollout.EnvBatch, rewards: jax.Array, done: jax.Array):
    """The running return and length carried across windows: finished totals [T, B] on done steps,
    and the EnvBatch's running sums after the window."""

    carry, (finished_return, finished_length) = jax.lax.scan(
        lambda totals, step: rollout.count_episodes(*totals, *step),
        (envs.episode_return, envs.episode_length), (rewards.astype(jnp.float32), done),
    )
    return carry, _Episodes(done=done, episode_return=finished_return, episode_length=finished_length)


def make_algorithm(config: Config, progress: Callable[[dict], None] | None = None) -> Algorithm:
    """APG/SHAC as `Algorithm(init, update, ...)`; see `make_train` for the metrics.
    state.opt_state = {"policy": ..., "value": ...} (each network its own clipped Adam)."""
    config.validate()
    networks = on_policy.make_networks(config, make_env(config.env_id))
    policy, value_fn, env, env_params = networks.policy, networks.value_fn, networks.env, networks.env_params
    progress = progress or default_progress(config)

    def optimizers(cfg: Config) -> dict:
        return {"policy": optim.clipped_adam(cfg.lr, cfg.max_grad_norm), "value": optim.clipped_adam(cfg.critic_lr, cfg.max_grad_norm)}

    def init_rest(params, cfg: Config):
        opt = optimizers(cfg)
        return {name: opt[name].init(p) for name, p in params.items()}, {}

    def policy_loss(policy_params, value_params, state: TrainState, keys: jax.Array, gamma):
        critic = (lambda obs: value_fn.apply(value_params, obs)) if config.critic else None
        objective, (obs, env_state), steps = jax.vmap(
            lambda k, o, s: pathwise.short_horizon_return(k, policy, policy_params, env, env_params, o, s, config.num_steps, gamma, critic)
        )(keys, state.envs.obs, state.envs.env_state)
        return -objective.mean() / config.num_steps, {"obs": obs, "env_state": env_state, "steps": steps}

    def value_loss(value_params, obs, targets):
        return estimators.value_loss(value_fn.apply(value_params, obs), targets)

    def update(state: TrainState) -> tuple[TrainState, dict]:
        cfg = config.replace(**state.hparams)
        opt = optimizers(cfg)
        key, window_key = jax.random.split(state.key)
        keys = jax.random.split(window_key, config.num_envs)
        value_params = state.params.get("value")
        policy_params, policy_opt, stats = optim.optimizer_step(
            opt["policy"], policy_loss, state.params["policy"], state.opt_state["policy"], value_params, state, keys, cfg.gamma
        )
        window = {name: stats.pop(name) for name in ("obs", "env_state", "steps")}
        params, opt_state = {"policy": policy_params}, {"policy": policy_opt}
        steps = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), jax.lax.stop_gradient(window["steps"]))  # [T, B, ...]
        done = jnp.logical_or(steps["terminated"], steps["truncated"])
        if config.critic:
            values = value_fn.apply(value_params, steps["obs"])
            next_values = value_fn.apply(value_params, steps["next_obs"])
            _, targets = returns.gae(steps["reward"], values, next_values, steps["terminated"], steps["truncated"], cfg.gamma, cfg.lam)
            params["value"], opt_state["value"], v_losses = optim.fit(
                opt["value"], value_loss, value_params, state.opt_state["value"], config.value_steps, steps["obs"], targets
            )
            stats["value_loss"] = v_losses[-1]
        (ep_return, ep_length), episodes = _episode_totals(state.envs, steps["reward"], done)
        envs_after = rollout.EnvBatch(env_state=window["env_state"], obs=window["obs"], episode_return=ep_return, episode_length=ep_length)
        done_updates = state.update + 1
        metrics = update_metrics(config, progress, done_updates, episodes, **stats)
        return state.replace(params=params, opt_state=opt_state, envs=envs_after, key=key, update=done_updates), metrics

    init = on_policy.make_init(config, networks, init_rest, uses_value=config.critic)
    return Algorithm(init, update, config.num_updates, policy, env, env_params)


def make_train(config: Config, progress: Callable[[dict], None] | None = None):
    """Build `train(key, hparams=None) -> (TrainState, metrics)`.

    `metrics` holds one entry per update (arrays [num_updates]): update, env_steps,
    episode_return, episode_length, episodes, loss (the negated window objective per step),
    grad_norm (of the policy's gradient, before clipping) and, with the critic, value_loss.
    """
    return train_fn(make_algorithm(config, progress))
