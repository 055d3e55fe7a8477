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

from typing import Callable

import jax
import jax.numpy as jnp
from flax import struct
from jax.flatten_util import ravel_pytree

from rlpg import estimators
from rlpg.algos import on_policy, optim
from rlpg.algos.common import OnPolicyConfig, numeric, numeric_fields, static


@struct.dataclass
class Config(OnPolicyConfig):
    """NPG configuration. Static fields fix the program's shapes; numeric ones are traced."""

    num_envs: int = static(16)
    total_timesteps: int = static(200_000)
    normalize_advantages: bool = static(True)
    """standardize the advantages of each batch"""
    cg_iters: int = static(10)
    """conjugate-gradient iterations for F⁻¹g"""
    value_steps: int = static(10)
    """full-batch Adam steps of the value network per update"""
    lr: float = numeric(3e-3, positive=True)
    """Adam learning rate of the value network"""
    lam: float = numeric(0.95, 0.0, 1.0)
    """GAE λ"""
    max_kl: float = numeric(0.01, positive=True)
    """trust region δ, the KL each natural-gradient step aims at"""
    damping: float = numeric(0.1)
    """ζ added to the Fisher's diagonal"""


NUMERIC_FIELDS = numeric_fields(Config)


def make_learner(config: Config, networks: on_policy.Networks) -> on_policy.Learner:
    """NPG's learning step: GAE advantages, the natural-gradient step of θ, then value_steps
    Adam steps of V (opt_state: the value network's Adam state)."""
    policy = networks.policy

    def value_optimizer(cfg: Config):
        return optim.clipped_adam(cfg.lr, cfg.max_grad_norm)

    def policy_step(policy_params, traj, advantages, cfg: Config):
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

    def value_loss(value_params, params, obs, targets):
        return estimators.value_loss(networks.value({**params, "value": value_params}, obs), targets)

    def learn(params, opt_state, extra, traj, cfg: Config, key):
        _, advantages, targets = on_policy.values_and_advantages(
            lambda obs: networks.value(params, obs), traj, traj.reward, cfg.gamma, cfg.lam
        )
        policy_params, stats = policy_step(params["policy"], traj, advantages, cfg)
        value_params, opt_state, value_losses = optim.fit(
            value_optimizer(cfg), value_loss, params["value"], opt_state, config.value_steps, params, traj.obs, targets
        )
        stats["value_loss"] = value_losses[0]  # before this update's value steps
        return {"policy": policy_params, "value": value_params}, opt_state, extra, stats

    def init(params, cfg: Config):
        return value_optimizer(cfg).init(params["value"]), {}

    return on_policy.Learner(init=init, learn=learn)


def make_algorithm(config: Config, progress: Callable[[dict], None] | None = None):
    """NPG as `Algorithm(init, update, ...)`; see `make_train` for the metrics and progress."""
    return on_policy.make_algorithm(config, make_learner, progress)


def make_train(config: Config, progress: Callable[[dict], None] | None = None):
    """Build `train(key, hparams=None) -> (TrainState, metrics)`.

    `metrics` holds one entry per update (arrays [num_updates]): update, env_steps,
    episode_return, episode_length, episodes, policy_loss, entropy, grad_norm (of g), step_norm
    (‖Δθ‖), kl (mean KL(π_old ‖ π_new) over the batch's states: the step sets ½ ΔθᵀFΔθ = max_kl
    for the batch's damped, sampled F, so kl ≈ max_kl only as far as the quadratic model holds
    and F matches the true Fisher; damping makes it smaller), value_loss. With
    `config.log_every = K > 0`, every K updates `progress(metrics_of_that_update)` is called
    from inside the compiled program.
    """
    return on_policy.make_train(config, make_learner, progress)
