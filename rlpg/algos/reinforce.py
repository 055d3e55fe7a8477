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
| total | value | R^V_γ(τ) − V(s_t): the episode's steps in the window discounted from its start (γ^τ_0 for one under way at the window's start), completed by V at the cut | ∇J_γ + the critic's bias |
| either | value, time_limits="bootstrap" | γ^τ_t (G^V_t − V(s_t)), G^V also bootstrapped at time limits | ∇ of the infinite-horizon J_γ (the time limit is not part of the task) + the critic's bias |

Time limits end an episode for every baseline (time_limits="end", the default): the objective
is the finite-horizon J_γ. time_limits="bootstrap" (baseline="value" only) treats a time limit
as a cut of an endless task, completed by V(s') like the window's cut: the usual choice for
tasks such as Pendulum whose time limit is not part of the task, where a V without the time as
input cannot fit returns that depend on the time left.

G_t = Σ_{k≥t} γ^{k−t} r_k to the end of the episode (completed by V at a cut: G^V_t); the
value baseline's V fits G^V_t whichever `returns` weight the policy, so that it completes a
cut episode as V^π would. normalize=True standardizes
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

import typing
from typing import Callable, Literal

import jax
import jax.numpy as jnp
from flax import struct

from rlpg import estimators, returns, rollout
from rlpg.algos import on_policy, optim
from rlpg.algos.common import OnPolicyConfig, check_hparams, numeric, numeric_fields, static

Returns = Literal["reward_to_go", "total"]
Baseline = Literal["none", "mean", "rloo", "value"]
TimeLimits = Literal["end", "bootstrap"]
DiscountWeighting = Literal["common", "gradient"]
RETURNS, BASELINES, TIME_LIMITS, DISCOUNT_WEIGHTINGS = map(typing.get_args, (Returns, Baseline, TimeLimits, DiscountWeighting))


@struct.dataclass
class Config(OnPolicyConfig):
    """REINFORCE configuration. Static fields fix the program's shapes; numeric ones are traced."""

    num_steps: int = static(500)
    returns: Returns = static("reward_to_go")
    """weight of each log-prob: the reward-to-go G_t or the whole episode's return R(τ)"""
    baseline: Baseline = static("value")
    """subtracted from the returns: none, the batch mean, the other envs' mean (leave-one-out), or a learned V(s)"""
    normalize: bool = static(True)
    """standardize each weight by the other environments' mean and spread (leave-one-out: still a
    positive multiple of the same gradient)"""
    discount_weighting: DiscountWeighting = static("common")
    """"common" weights by G_t (the usual update), "gradient" by γ^t G_t (the gradient of the discounted return)"""
    time_limits: TimeLimits = static("end")
    """a time limit "end"s the episode (finite-horizon objective, every baseline) or, with
    baseline="value", "bootstrap"s from V of the state reached (the time limit is not part of the task)"""
    value_coef: float = numeric(0.5)
    """weight of the value loss"""
    ent_coef: float = numeric(0.0)
    """weight of the entropy bonus"""
    reward_scale: float = numeric(1.0, positive=True)
    """rewards are multiplied by this before returns are formed (metrics stay unscaled)"""

    def validate(self) -> "Config":
        """Raise ValueError naming the first bad field; returns self."""
        super().validate()
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
        return self


NUMERIC_FIELDS = numeric_fields(Config)


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
    """τ_t [L, B] where the weights use it ("gradient" weighting; `total` returns of carried windows), else None."""
    needed = config.discount_weighting == "gradient" or _discounts_total_from_episode_start(config)
    return returns.episode_time(traj.done, time0) if needed else None


def _discounts_total_from_episode_start(config: Config) -> bool:
    """Whether R_γ(τ) of an episode under way at the window's start needs its γ^τ_0 (`total`
    returns of carried windows; under time_limits="bootstrap" G is per-step and weighted by γ^τ_t)."""
    return config.returns == "total" and not counts_by_start(config) and config.time_limits == "end"


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
    """(weights ŵ [L, B], value targets [L, B]) of the configured variant (see the table above).

    values, next_values: [L, B] V(s_t) and V(s'_t) (zeros without a learned baseline). The value
    targets are the per-step returns G_t (G^V_t with a value baseline: V^π's target, for
    either `returns`, so that V at the window's cut completes a return as V^π would).
    """
    traj, mask = window.traj, window.mask
    reward = traj.reward * reward_scale
    done = traj.done  # time limits end episodes, whatever the baseline (unless time_limits="bootstrap")
    bootstrap = next_values[-1] if config.baseline == "value" else None  # V at the window's cut
    if config.time_limits == "bootstrap":  # truncated steps continue with V(s'): GAE(γ, λ = 1) + V
        _, targets = returns.gae(reward, values, next_values, traj.terminated, traj.truncated, gamma, 1.0)
    else:
        targets = returns.reward_to_go(reward, done, gamma, bootstrap)
    if config.returns == "total" and config.time_limits == "end":  # an episode under way: from its own start
        time0 = None if counts_by_start(config) else window.time[0]  # windows counted by start begin at resets
        g = returns.total_return(reward, done, gamma, bootstrap, initial_time=time0)
    else:
        g = targets
    discount = 1.0  # γ^τ where G is a per-step return: reward-to-go, and G^V under time_limits="bootstrap"
    if config.discount_weighting == "gradient" and (config.returns == "reward_to_go" or config.time_limits == "bootstrap"):
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
    return jax.lax.stop_gradient(weights), targets


def _loss_fn(config: Config, networks: on_policy.Networks) -> Callable:
    """`loss_fn(params, window, cfg) -> (loss, aux)`: the loss L(θ, w) of the module docstring."""
    use_value = config.baseline == "value"
    policy = networks.policy

    def loss_fn(params, window: Window, cfg: Config):
        traj = window.traj
        dist = policy.apply(params["policy"], traj.obs)
        log_prob = policy.distribution.log_prob(dist, traj.action)
        entropy = policy.distribution.entropy(dist)
        if use_value:  # V(s'_t) is only a target: no gradient, so no backward pass over it (~20% faster)
            values = networks.value(params, traj.obs)
            next_values = networks.value(jax.lax.stop_gradient(params), traj.next_obs)
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


def make_policy_gradient(config: Config, networks: on_policy.Networks | None = None) -> Callable:
    """`gradient(params, window, hparams=None) -> ĝ`: the update's policy-gradient estimate on a window.

    ĝ = −∇_θ L, the policy part of the gradient that `make_algorithm`'s update hands to its
    optimizer (the same loss; with ent_coef = 0, in expectation a positive multiple of the
    gradient in the module's table). params {"policy", "value"?} as in `TrainState`; window from
    `collect`; ĝ is shaped like params["policy"]. `networks`: the config's (`on_policy.make_networks`).
    """
    loss_fn = _loss_fn(config, networks or on_policy.make_networks(config.validate()))

    def gradient(params, window: Window, hparams=None):
        cfg = config.replace(**check_hparams(hparams, config))
        grads, _ = jax.grad(loss_fn, has_aux=True)(params, window, cfg)
        return jax.tree.map(jnp.negative, grads["policy"])

    return gradient


def make_gradient_estimator(config: Config) -> Callable:
    """`estimate(key, params, envs, hparams=None) -> (envs, ĝ, window)`: one update's window
    (`collect`, from the carried envs) and its estimate (`make_policy_gradient`), as the update
    computes them; returns the envs to carry on from."""
    networks = on_policy.make_networks(config.validate())
    gradient = make_policy_gradient(config, networks)

    def estimate(key, params, envs, hparams=None):
        envs, window = collect(key, config, networks.policy, params["policy"], networks.env, networks.env_params, envs)
        return envs, gradient(params, window, hparams), window

    return estimate


def make_learner(config: Config, networks: on_policy.Networks) -> on_policy.Learner:
    """REINFORCE's learning step on a `Window` (its own `collect`): one Adam step on L(θ, w)."""
    loss_fn = _loss_fn(config, networks)

    def optimizer(cfg: Config):  # policy and value clipped apart (a large value loss must not shrink the policy step)
        return optim.adam(cfg.lr, cfg.max_grad_norm)

    def window(key, policy_params, envs):
        envs, window = collect(key, config, networks.policy, policy_params, networks.env, networks.env_params, envs)
        return envs, window.traj, window

    def learn(params, opt_state, extra, window: Window, cfg: Config, key):
        params, opt_state, stats = optim.optimizer_step(optimizer(cfg), loss_fn, params, opt_state, window, cfg)
        if counts_by_start(config):
            stats["continuation_steps"] = jnp.sum(window.mask[config.num_steps :]).astype(jnp.int32)
        return params, opt_state, extra, stats

    return on_policy.Learner(
        init=lambda params, cfg: (optimizer(cfg).init(params), {}),
        learn=learn,
        uses_value=config.baseline == "value",
        collect=window,
    )


def make_algorithm(config: Config, progress: Callable[[dict], None] | None = None):
    """REINFORCE as `Algorithm(init, update, ...)`; see `make_train` for the metrics and progress."""
    return on_policy.make_algorithm(config, make_learner, progress)


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
    return on_policy.make_train(config, make_learner, progress)
