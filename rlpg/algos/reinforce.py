"""REINFORCE (the score-function policy gradient) on gymnax, as one jit-able `train(key)`.

Each update rolls the policy out for `num_steps` steps in `num_envs` auto-resetting
environments, weights each log-probability by a return, and takes one optax step on

    L(θ, w) = −Σ_t mask_t ŵ_t log π_θ(a_t|s_t) / (num_envs·num_steps) + c_v ½ mean[(V_w(s_t) − G_t)²] − c_H mean H[π_θ(·|s_t)],

ŵ under stop_gradient. The divisor is a constant, so the policy term's expected gradient is a
fixed multiple of the expected sum. Time limits end an episode, whatever the baseline: the
objective is the episode's discounted return under the env's time limit H,
J_γ(θ) = E[Σ_{t<H} γ^t r_t] from a reset (`rlpg.exact.finite_horizon_expected_return` with
`discount=γ`). τ_t below is the step's time since its episode began.

Which steps count (the window):
- baseline "none", "mean", "rloo": episodes are counted by where they START. Every window
  begins at resets; episodes under way at step `num_steps` are followed to their end
  (`rollout.finish_episodes`: more env steps, reported as `continuation_steps`), and no new one
  starts. Whether an episode is counted then depends only on what came before it, so by
  Wald's identity the sum over the counted episodes has expectation E[K]·(one episode's
  term), K the number of episodes started in the window.
- baseline "value": the window is carried over from the last update (no continuation, no step
  wasted) and an episode cut by the window's end is completed by the learned V of the state it
  reached (GAE with λ = 1). Its update is ∇J_γ only where V is V^π (and, for windows that do
  not start at resets, once the environments' episode phases are stationary): the critic's
  error at the cut biases it, as every actor-critic is.

| returns | baseline | ŵ_t with discount_weighting="gradient" ("common": drop γ^τ_t) | E[update] ∝ |
| --- | --- | --- | --- |
| reward_to_go | none | γ^τ_t G_t | ∇J_γ ("common": ∇J_1 if γ = 1, no function's gradient if γ < 1) |
| reward_to_go | rloo | γ^τ_t (G_t − mean of the other envs' G) | ∇J_γ (as above) |
| reward_to_go | mean | γ^τ_t (G_t − mean of the batch's G) | ∇J_γ + O(1/num_envs) bias (the batch contains G_t) |
| reward_to_go | value | γ^τ_t (G^V_t − V(s_t)), G^V bootstrapped at the cut | ∇J_γ + the critic's bias |
| total | none, rloo, mean | R_γ(τ) (− the baseline); no γ^τ: R_γ is already discounted | ∇J_γ (mean: + O(1/num_envs)) |
| total | value | R^V_γ(τ) − V(s_t), over the episode's steps in the window | ∇J_γ + the critic's bias |
| either | value, time_limits="bootstrap" | γ^τ_t (G^V_t − V(s_t)), G^V also bootstrapped at time limits | ∇ of the infinite-horizon J_γ (the time limit is not part of the task) + the critic's bias |

Time limits end an episode for every baseline (time_limits="end", the default): the objective
is the finite-horizon J_γ. time_limits="bootstrap" (baseline="value" only) treats a time limit
as a cut of an endless task, completed by V(s') like the window's cut: the usual choice for
tasks such as Pendulum whose time limit is not part of the task, where a V without the time as
input cannot fit returns that depend on the time left.

G_t = Σ_{k≥t} γ^{k−t} r_k to the end of the episode. normalize=True standardizes
γ^τ_t G_t (γ^τ_t (G_t − V(s_t)) with the value baseline) by the mean and standard deviation
of the OTHER environments' weights (`leave_one_out_normalize`): independent of the
environment's own actions, so the update stays a positive (random) multiple of the same
gradient. Its centring is a leave-one-out baseline, so with normalize=True "none", "mean" and
"rloo" give the same update (and "mean" loses its bias). It needs num_envs ≥ 2, as "rloo" does.
The default, discount_weighting="common" with γ = 0.99, is the usual update: it weights late
steps of an episode as much as early ones, optimizing roughly the average discounted value of
the states visited rather than J_γ; "gradient" is the true gradient of J_γ, which for γ < 1
makes late steps count little (set γ = 1 for an undiscounted finite-horizon objective).
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
    check_hparams,
    check_run_sizes,
    checks_hparams,
    print_progress,
    train_fn,
    update_metrics,
)

RETURNS = ("reward_to_go", "total")
BASELINES = ("none", "mean", "rloo", "value")
TIME_LIMITS = ("end", "bootstrap")
DISCOUNT_WEIGHTINGS = ("common", "gradient")
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
    discount_weighting: str = struct.field(pytree_node=False, default="common")  # "gradient": γ^t G_t, the gradient of J_γ
    time_limits: str = struct.field(pytree_node=False, default="end")  # "bootstrap": a time limit continues with V (baseline="value")
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
        if self.discount_weighting not in DISCOUNT_WEIGHTINGS:
            raise ValueError(
                f"`discount_weighting` must be one of {DISCOUNT_WEIGHTINGS}; got {self.discount_weighting!r}."
            )
        if self.time_limits not in TIME_LIMITS:
            raise ValueError(f"`time_limits` must be one of {TIME_LIMITS}; got {self.time_limits!r}.")
        if self.time_limits == "bootstrap" and self.baseline != "value":
            raise ValueError(
                f"`time_limits`='bootstrap' continues a truncated episode with the learned V, so it needs "
                f"baseline='value'; got baseline={self.baseline!r}."
            )
        if (self.baseline == "rloo" or self.normalize) and self.num_envs < 2:
            raise ValueError(
                f"`num_envs` must be >= 2 with baseline='rloo' or normalize=True (statistics of the other "
                f"environments); got {self.num_envs}."
            )
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


@struct.dataclass
class Window:
    """The experience of one update, time-major [L, B]: L = num_steps, plus the continuation's
    buffer when episodes are counted by where they start."""

    traj: rollout.Trajectory
    mask: jax.Array  # [L, B] float: 1 on the steps that count
    time: jax.Array | None  # [L, B] int: τ_t, steps the episode had taken before step t (None: not needed)


def counts_by_start(config: Config) -> bool:
    """Whether the config's windows count episodes by where they start (all but baseline="value")."""
    return config.baseline != "value"


def _episode_time(config: Config, traj: rollout.Trajectory, time0: jax.Array) -> jax.Array | None:
    """τ_t [L, B] where the weights use it ("gradient" weighting), else None."""
    return returns.episode_time(traj.done, time0) if config.discount_weighting == "gradient" else None


def collect(key: jax.Array, config: Config, policy, params, env, env_params, envs: rollout.EnvBatch):
    """One update's window: (envs to carry on from, Window).

    `num_steps` steps of `rollout.rollout`; when `counts_by_start(config)`, followed by
    `rollout.finish_episodes` (buffer of the env's time limit) so that every counted episode is
    whole and the next window starts at resets.
    """
    time0 = envs.episode_length
    if not counts_by_start(config):
        envs, traj = rollout.rollout(key, policy, params, env, env_params, envs, config.num_steps)
        return envs, Window(traj, jnp.ones_like(traj.reward), _episode_time(config, traj, time0))
    window_key, tail_key = jax.random.split(key)
    envs, traj = rollout.rollout(window_key, policy, params, env, env_params, envs, config.num_steps)
    envs, tail, taken = rollout.finish_episodes(
        tail_key, policy, params, env, env_params, envs, int(env_params.max_steps_in_episode)
    )
    traj = jax.tree.map(lambda x, y: jnp.concatenate([x, y]), traj, tail)
    mask = jnp.concatenate([jnp.ones((config.num_steps, config.num_envs), taken.dtype), taken])
    return envs, Window(traj, mask, _episode_time(config, traj, time0))


def weights_and_targets(config: Config, window: Window, values, next_values, gamma, reward_scale):
    """(weights ŵ [L, B], returns G [L, B]: the value targets) of the configured variant (see the table above).

    values, next_values: [L, B] V(s_t) and V(s'_t) (zeros without a learned baseline).
    """
    traj, mask = window.traj, window.mask
    reward = traj.reward * reward_scale
    done = traj.done  # time limits end episodes, whatever the baseline (unless time_limits="bootstrap")
    bootstrap = next_values[-1] if config.baseline == "value" else None  # V at the window's cut
    if config.time_limits == "bootstrap":  # truncated steps continue with V(s'): GAE(γ, λ = 1) + V
        _, g = returns.gae(reward, values, next_values, traj.terminated, traj.truncated, gamma, 1.0)
    elif config.returns == "reward_to_go":
        g = returns.reward_to_go(reward, done, gamma, bootstrap)
    else:
        g = returns.total_return(reward, done, gamma, bootstrap)
    discount = 1.0
    if config.discount_weighting == "gradient" and config.returns == "reward_to_go":
        discount = jnp.power(gamma, window.time.astype(g.dtype))
    if config.normalize:  # the centring is the other envs' mean: none, mean and rloo coincide
        weights = discount * (g - values if config.baseline == "value" else g)
        weights = estimators.leave_one_out_normalize(weights, mask)
    else:
        baseline = {
            "none": 0.0,
            "mean": estimators.batch_mean_baseline(g, mask),
            "rloo": estimators.leave_one_out_baseline(g, mask),
            "value": values,
        }[config.baseline]
        weights = discount * (g - baseline)
    return jax.lax.stop_gradient(weights), g


def _networks(config: Config):
    """(env, env_params, policy, value_fn) of a validated config."""
    config.validate()
    env, env_params = rollout.make_env(config.env_id)
    policy = rollout.make_policy(env, env_params, config.hidden, config.activation, config.policy)
    value_fn = rollout.policies.mlp_value(env.observation_space(env_params).shape, config.hidden, config.activation)
    return env, env_params, policy, value_fn


def _loss_fn(config: Config, policy, value_fn) -> Callable:
    """`loss_fn(params, window, cfg) -> (loss, aux)`: the loss L(θ, w) of the module docstring."""
    use_value = config.baseline == "value"

    def loss_fn(params, window: Window, cfg: Config):
        traj = window.traj
        dist = policy.apply(params["policy"], traj.obs)
        log_prob = policy.distribution.log_prob(dist, traj.action)
        entropy = policy.distribution.entropy(dist)
        if use_value:  # V(s'_t) is only a target: no gradient, so no backward pass over it (~20% faster)
            values = value_fn.apply(params["value"], traj.obs)
            next_values = value_fn.apply(jax.lax.stop_gradient(params["value"]), traj.next_obs)
        else:
            values = next_values = jnp.zeros_like(traj.reward)
        weights, targets = weights_and_targets(
            config, window, jax.lax.stop_gradient(values), jax.lax.stop_gradient(next_values), cfg.gamma, cfg.reward_scale
        )
        mask = window.mask
        policy_loss = estimators.reinforce_loss(log_prob, weights, mask, count=config.steps_per_update)
        v_loss = estimators.value_loss(values, targets, mask) if use_value else jnp.zeros(())
        ent = estimators.entropy_bonus(entropy, mask)
        loss = policy_loss + cfg.value_coef * v_loss - cfg.ent_coef * ent
        return loss, {"policy_loss": policy_loss, "value_loss": v_loss, "entropy": ent}

    return loss_fn


def make_policy_gradient(config: Config) -> Callable:
    """`gradient(params, window, hparams=None) -> ĝ`: the update's policy-gradient estimate on a window.

    ĝ = −∇_θ L, the policy part of the gradient that `make_algorithm`'s update hands to its
    optimizer (the same loss; with ent_coef = 0, in expectation a positive multiple of the
    gradient in the module's table). params {"policy", "value"?} as in `TrainState`; window from
    `collect`; ĝ is shaped like params["policy"].
    """
    _, _, policy, value_fn = _networks(config)
    loss_fn = _loss_fn(config, policy, value_fn)

    def gradient(params, window: Window, hparams=None):
        cfg = config.replace(**check_hparams(hparams, NUMERIC_FIELDS, config))
        grads, _ = jax.grad(loss_fn, has_aux=True)(params, window, cfg)
        return jax.tree.map(jnp.negative, grads["policy"])

    return gradient


def make_gradient_estimator(config: Config) -> Callable:
    """`estimate(key, params, envs, hparams=None) -> (envs, ĝ, window)`: one update's window
    (`collect`, from the carried envs) and its estimate (`make_policy_gradient`), as the update
    computes them; returns the envs to carry on from."""
    env, env_params, policy, _ = _networks(config)
    gradient = make_policy_gradient(config)

    def estimate(key, params, envs, hparams=None):
        envs, window = collect(key, config, policy, params["policy"], env, env_params, envs)
        return envs, gradient(params, window, hparams), window

    return estimate


def make_algorithm(config: Config, progress: Callable[[dict], None] | None = None) -> Algorithm:
    """REINFORCE as `Algorithm(init, update, ...)`; see `make_train` for the metrics and progress."""
    env, env_params, policy, value_fn = _networks(config)
    use_value = config.baseline == "value"
    loss_fn = _loss_fn(config, policy, value_fn)
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

    def update(state: TrainState) -> tuple[TrainState, dict]:
        cfg = config.replace(**state.hparams)
        key, rollout_key = jax.random.split(state.key)
        envs, window = collect(rollout_key, config, policy, state.params["policy"], env, env_params, state.envs)
        params, opt_state, stats = actor_critic.optimizer_step(
            optimizer(cfg), loss_fn, state.params, state.opt_state, window, cfg
        )
        done_updates = state.update + 1
        if counts_by_start(config):
            stats["continuation_steps"] = jnp.sum(window.mask[config.num_steps :]).astype(jnp.int32)
        metrics = update_metrics(config, progress, done_updates, window.traj, **stats)
        new_state = state.replace(params=params, opt_state=opt_state, envs=envs, key=key, update=done_updates)
        return new_state, metrics

    return Algorithm(init, update, config.num_updates, policy, env, env_params)


def make_train(config: Config, progress: Callable[[dict], None] | None = None):
    """Build `train(key, hparams=None) -> (TrainState, metrics)`.

    `metrics` holds one entry per update (arrays [num_updates]): update, env_steps,
    episode_return, episode_length, episodes, loss, policy_loss, value_loss, entropy, grad_norm
    (of the policy's gradient, before clipping), and, when episodes are counted by where they
    start, continuation_steps: the env steps taken after the window to finish its episodes
    (not in env_steps, which counts num_envs × num_steps per update).
    With `config.log_every = K > 0`, every K updates `progress(metrics_of_that_update)` is called
    from inside the compiled program (default: print a line); under vmap it is called once per
    batch element.
    """
    return train_fn(make_algorithm(config, progress))
