"""Natural policy gradient (NPG) on gymnax, as one jit-able `train(key)`.

Each update: roll the policy out, compute GAE(γ, λ) advantages Â with a learned V_w (one
batched pass over V(s_t), V(s'_t); bootstrapping on truncation, not on termination), then

    g = (1/N) Σ_i Â_i ∇log π_θ(a_i|s_i),   F = (1/N) Σ_i ∇log π_θ(a_i|s_i) ∇log π_θ(a_i|s_i)ᵀ + ζ I,
    θ ← θ + sqrt(2δ / (gᵀF⁻¹g)) F⁻¹g,

F from the per-sample scores of the batch, applied as Fisher-vector products (jvp, then vjp
of the log-probabilities; `estimators.fisher_vector_product`), F⁻¹g by `cg_iters` steps of
conjugate gradient; δ = `max_kl`, ζ = `damping`. The value network then takes `value_steps`
full-batch Adam steps on ½ mean (V_w − Ĝ)² (gradient clipped to `max_grad_norm`).

`train(key, hparams)` is pure and vmappable over keys and the numeric fields (lr, gamma, lam,
max_kl, damping, max_grad_norm); `lr` is the value network's learning rate.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.flatten_util import ravel_pytree

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

NUMERIC_FIELDS = ("lr", "gamma", "lam", "max_kl", "damping", "max_grad_norm")


@struct.dataclass
class Config(RolloutSizes):
    """NPG configuration. Static fields fix the program's shapes; numeric ones are traced."""

    env_id: str = struct.field(pytree_node=False, default="CartPole-v1")
    num_envs: int = struct.field(pytree_node=False, default=16)
    num_steps: int = struct.field(pytree_node=False, default=128)
    total_timesteps: int = struct.field(pytree_node=False, default=200_000)
    hidden: tuple[int, ...] = struct.field(pytree_node=False, default=(64, 64))
    activation: str = struct.field(pytree_node=False, default="tanh")
    normalize_advantages: bool = struct.field(pytree_node=False, default=True)
    cg_iters: int = struct.field(pytree_node=False, default=10)
    value_steps: int = struct.field(pytree_node=False, default=10)
    log_every: int = struct.field(pytree_node=False, default=0)
    lr: float = 3e-3
    gamma: float = 0.99
    lam: float = 0.95
    max_kl: float = 0.01
    damping: float = 0.1
    max_grad_norm: float = 0.5

    def validate(self) -> "Config":
        """Raise ValueError naming the first bad field; returns self."""
        check_run_sizes(self, ("num_envs", "num_steps", "total_timesteps", "cg_iters", "value_steps"))
        check_hidden(self.hidden)
        check_positive("lr", self.lr)
        check_in_interval("gamma", self.gamma, 0.0, 1.0)
        check_in_interval("lam", self.lam, 0.0, 1.0)
        check_positive("max_kl", self.max_kl)
        check_in_interval("damping", self.damping, 0.0, float("inf"))
        check_positive("max_grad_norm", self.max_grad_norm)
        rollout.make_env(self.env_id)  # unknown ids fail here, naming close ones
        return self


@struct.dataclass
class TrainState:
    """Everything a run carries from one update to the next."""

    params: dict  # {"policy": ..., "value": ...}
    opt_state: Any  # the value network's Adam state
    envs: rollout.EnvBatch
    key: jax.Array
    update: jax.Array  # [] int32, updates done so far
    hparams: dict  # overrides of the numeric config fields (traced; {} for none)


def make_algorithm(config: Config, progress: Callable[[dict], None] | None = None) -> Algorithm:
    """NPG as `Algorithm(init, update, ...)`; see `make_train` for the metrics and progress."""
    config.validate()
    env, env_params = rollout.make_env(config.env_id)
    obs_shape = env.observation_space(env_params).shape
    policy = rollout.make_policy(env, env_params, config.hidden, config.activation)
    value_fn = rollout.policies.mlp_value(obs_shape, config.hidden, config.activation)
    progress = progress or print_progress

    def value_optimizer(cfg: Config):
        return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(cfg.lr))

    @checks_hparams(config, NUMERIC_FIELDS)
    def init(key: jax.Array, hparams: dict | None = None) -> TrainState:
        policy_key, value_key, env_key, run_key = jax.random.split(key, 4)
        params = {"policy": policy.init(policy_key), "value": value_fn.init(value_key)}
        return TrainState(
            params=params,
            opt_state=value_optimizer(config.replace(**hparams)).init(params["value"]),
            envs=rollout.reset(env_key, env, env_params, config.num_envs),
            key=run_key,
            update=jnp.zeros((), jnp.int32),
            hparams=hparams,
        )

    def policy_step(policy_params, traj: rollout.Trajectory, advantages, cfg: Config):
        """θ + the natural gradient step, and the step's diagnostics."""
        theta, unravel = ravel_pytree(policy_params)
        weights = estimators.reinforce_weights(advantages, None, config.normalize_advantages)

        def log_probs(theta):
            return policy.distribution.log_prob(policy.apply(unravel(theta), traj.obs), traj.action)

        def surrogate(theta):  # −L: its gradient is g
            return -estimators.reinforce_loss(log_probs(theta), weights)

        grad = jax.grad(surrogate)(theta)
        step = estimators.natural_gradient_step(
            grad, lambda v: estimators.fisher_vector_product(log_probs, theta, v) + cfg.damping * v,
            cfg.max_kl, config.cg_iters,
        )
        new_params = unravel(theta + step)
        old_dist, new_dist = policy.apply(policy_params, traj.obs), policy.apply(new_params, traj.obs)
        return new_params, {
            "policy_loss": -surrogate(theta),
            "entropy": estimators.entropy_bonus(policy.distribution.entropy(old_dist)),
            "grad_norm": jnp.linalg.norm(grad),
            "step_norm": jnp.linalg.norm(step),
            "kl": jnp.mean(policy.distribution.kl(old_dist, new_dist)),
        }

    def value_steps(value_params, opt_state, obs, targets, cfg: Config):
        def step(carry, _):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(lambda p: estimators.value_loss(value_fn.apply(p, obs), targets))(params)
            updates, opt_state = value_optimizer(cfg).update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        return jax.lax.scan(step, (value_params, opt_state), None, length=config.value_steps)

    def update(state: TrainState) -> tuple[TrainState, dict]:
        cfg = config.replace(**state.hparams)
        key, rollout_key = jax.random.split(state.key)
        envs, traj = rollout.rollout(
            rollout_key, policy, state.params["policy"], env, env_params, state.envs, config.num_steps
        )
        _, advantages, targets = actor_critic.values_and_advantages(
            lambda obs: value_fn.apply(state.params["value"], obs), traj, traj.reward, cfg.gamma, cfg.lam
        )
        policy_params, stats = policy_step(state.params["policy"], traj, advantages, cfg)
        (value_params, opt_state), value_losses = value_steps(
            state.params["value"], state.opt_state, traj.obs, targets, cfg
        )
        done_updates = state.update + 1
        # value_loss: before this update's value steps
        metrics = update_metrics(config, progress, done_updates, traj, **stats, value_loss=value_losses[0])
        new_state = state.replace(
            params={"policy": policy_params, "value": value_params}, opt_state=opt_state, envs=envs, key=key,
            update=done_updates,
        )
        return new_state, metrics

    return Algorithm(init, update, config.num_updates, policy, env, env_params)


def make_train(config: Config, progress: Callable[[dict], None] | None = None):
    """Build `train(key, hparams=None) -> (TrainState, metrics)`.

    `metrics` holds one entry per update (arrays [num_updates]): update, env_steps,
    episode_return, episode_length, episodes, policy_loss, entropy, grad_norm (of g), step_norm
    (‖Δθ‖), kl (mean KL(π_old ‖ π_new) over the batch's states, ≈ max_kl when the quadratic
    model holds), value_loss. With `config.log_every = K > 0`, every K updates
    `progress(metrics_of_that_update)` is called from inside the compiled program.
    """
    return train_fn(make_algorithm(config, progress))
