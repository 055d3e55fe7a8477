"""DQN (Mnih et al. 2015) on gymnax, as one jit-able `train(key)`: the value-based contrast.

A Q-network Q_θ(s, ·) acts ε-greedily in `num_envs` auto-resetting environments; each step's
transitions (s, a, r, terminated, s') go into a replay buffer (`rlpg.replay`, held in the
jitted state), and gradient steps on minibatches drawn uniformly from it minimize

    L(θ) = mean[ℓ(Q_θ(s, a) − y)],    y = r + γ (1 − terminated) Q_θ⁻(s', a*),

with ℓ the Huber or squared loss, a* = argmax_a Q_θ⁻(s', a) (DQN) or argmax_a Q_θ(s', a)
(double DQN, van Hasselt et al. 2016), and θ⁻ a target network refreshed every
`target_update_every` gradient steps by θ⁻ ← τ θ + (1 − τ) θ⁻ (τ = 1: a copy; τ < 1 with
`target_update_every = 1`: Polyak averaging). s' is the state the step really reached (gymnax's
pre-reset `final_observation`), so a step cut by the time limit (truncated, not terminated)
still bootstraps; only termination cuts the bootstrap.

One update = `train_freq` steps of all `num_envs` environments (`train_freq × num_envs` env
steps, the transitions of one `rollout.rollout` window) followed by `gradient_steps` gradient
steps, once `learning_starts` env steps have been taken. Grouping env steps this way keeps the
scan short and the per-update metrics arrays moderate.

The two switches of the classic ablation:
- `replay=False`: no buffer; every gradient step uses the current update's
  `train_freq × num_envs` transitions (online Q-learning on correlated data).
- `target_network=False`: θ⁻ = θ, the online network bootstraps itself (under stop_gradient).

ε decays linearly from `eps_start` to `eps_end` over the first `exploration_fraction` of
`total_timesteps`. The acting policy reported by `make_algorithm` is the greedy one: its
distribution is a categorical over logits = Q-values, so its mode is argmax_a Q(s, a) and
`rollout.evaluate`, `rlpg.load_policy` and `experiments.train` use DQN like any policy.

`train(key, hparams)` is pure; the numeric fields (`NUMERIC_FIELDS`) may be overridden by
traced arrays to sweep them in one program, as for every algorithm in `rlpg.algos`.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct
from gymnax.environments import spaces

from rlpg import distributions, policies, replay, rollout
from rlpg._checks import check_floating, check_in_interval, check_positive, check_rank, check_same_shape, check_shape
from rlpg.algos.common import (
    Algorithm,
    check_hidden,
    checks_hparams,
    check_run_sizes,
    print_progress,
    train_fn,
    update_metrics,
)
from rlpg.policies import Policy

LOSSES = ("huber", "mse")
NUMERIC_FIELDS = ("lr", "gamma", "eps_start", "eps_end", "exploration_fraction", "tau", "max_grad_norm")


@struct.dataclass
class Config:
    """DQN configuration. Static fields fix the program's shapes; numeric ones are traced.

    Counts: `total_timesteps`, `learning_starts` and `buffer_size` are in env steps (summed
    over the environments); `train_freq` in steps of each environment per update;
    `target_update_every` in gradient steps. `hidden=()` makes Q linear in the observation.
    """

    env_id: str = struct.field(pytree_node=False, default="CartPole-v1")
    num_envs: int = struct.field(pytree_node=False, default=4)
    train_freq: int = struct.field(pytree_node=False, default=16)
    gradient_steps: int = struct.field(pytree_node=False, default=8)
    total_timesteps: int = struct.field(pytree_node=False, default=200_000)
    buffer_size: int = struct.field(pytree_node=False, default=10_000)
    batch_size: int = struct.field(pytree_node=False, default=128)
    learning_starts: int = struct.field(pytree_node=False, default=10_000)
    target_update_every: int = struct.field(pytree_node=False, default=50)
    replay: bool = struct.field(pytree_node=False, default=True)
    target_network: bool = struct.field(pytree_node=False, default=True)
    double: bool = struct.field(pytree_node=False, default=False)
    loss: str = struct.field(pytree_node=False, default="mse")
    hidden: tuple[int, ...] = struct.field(pytree_node=False, default=(64, 64))
    activation: str = struct.field(pytree_node=False, default="relu")
    log_every: int = struct.field(pytree_node=False, default=0)
    lr: float = 2.5e-4
    gamma: float = 0.99
    eps_start: float = 1.0
    eps_end: float = 0.05
    exploration_fraction: float = 0.25  # ε reaches eps_end after this fraction of total_timesteps
    tau: float = 1.0  # target refresh θ⁻ ← τθ + (1 − τ)θ⁻
    max_grad_norm: float = 10.0

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.train_freq

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.steps_per_update

    def validate(self) -> "Config":
        """Raise ValueError naming the first bad field; returns self."""
        check_run_sizes(
            self,
            ("num_envs", "train_freq", "gradient_steps", "total_timesteps", "buffer_size", "batch_size", "target_update_every"),
            per_update="num_envs × train_freq",
        )
        if self.replay and self.buffer_size < self.steps_per_update:
            raise ValueError(
                f"`buffer_size` ({self.buffer_size}) must hold at least one update's transitions, "
                f"num_envs × train_freq = {self.steps_per_update}."
            )
        if not isinstance(self.learning_starts, int) or self.learning_starts < 0:
            raise ValueError(f"`learning_starts` must be an integer >= 0; got {self.learning_starts!r}.")
        if self.learning_starts >= self.num_updates * self.steps_per_update:
            raise ValueError(
                f"`learning_starts` ({self.learning_starts}) must be below the run's "
                f"{self.num_updates * self.steps_per_update} env steps, or no gradient step is taken."
            )
        check_hidden(self.hidden, allow_empty=True)
        if self.loss not in LOSSES:
            raise ValueError(f"`loss` must be one of {LOSSES}; got {self.loss!r}.")
        check_positive("lr", self.lr)
        check_in_interval("gamma", self.gamma, 0.0, 1.0)
        check_in_interval("eps_start", self.eps_start, 0.0, 1.0)
        check_in_interval("eps_end", self.eps_end, 0.0, 1.0)
        check_in_interval("exploration_fraction", self.exploration_fraction, 0.0, 1.0)
        check_in_interval("tau", self.tau, 0.0, 1.0)
        check_positive("tau", self.tau)
        check_positive("max_grad_norm", self.max_grad_norm)
        rollout.make_env(self.env_id)  # unknown ids fail here, naming close ones
        return self


@struct.dataclass
class TrainState:
    """Everything a run carries from one update to the next."""

    params: dict  # {"policy": θ}, the online Q-network (its greedy policy is the acting policy)
    target_params: Any  # θ⁻; None without a target network (θ bootstraps itself)
    opt_state: Any
    buffer: replay.ReplayBuffer | None  # None without replay
    envs: rollout.EnvBatch
    key: jax.Array
    update: jax.Array  # [] int32, updates done so far
    grad_steps: jax.Array  # [] int32, gradient steps taken so far
    hparams: dict  # overrides of the numeric config fields (traced; {} for none)


# ----------------------------------------------------------------------------- pure pieces


def td_target(
    reward: jax.Array,
    terminated: jax.Array,
    next_q_target: jax.Array,
    gamma: float | jax.Array,
    next_q_online: jax.Array | None = None,
) -> jax.Array:
    """y = r + γ (1 − terminated) Q⁻(s', a*), with no gradient.

    a* = argmax_a Q⁻(s', a) (DQN), or argmax_a Q(s', a) when `next_q_online` is given (double
    DQN: the online network selects, the target network evaluates).

    Args:
      reward: [B] float.  terminated: [B] bool (truncation must not be passed here: it bootstraps).
      next_q_target: [B, A] Q⁻(s', ·).  next_q_online: [B, A] Q(s', ·) or None.
      gamma: [] discount.
    Returns:
      [B] targets.
    """
    check_rank("reward", reward, 1, "[B]")
    check_floating("reward", reward)
    check_same_shape(reward=reward, terminated=terminated)
    check_rank("next_q_target", next_q_target, 2, "[B, A]")
    check_shape("next_q_target", next_q_target, (reward.shape[0], next_q_target.shape[1]), "[B, A] with B = len(reward)")
    check_in_interval("gamma", gamma, 0.0, 1.0)
    if next_q_online is None:
        next_value = next_q_target.max(axis=-1)
    else:
        check_shape("next_q_online", next_q_online, next_q_target.shape, "the shape of next_q_target")
        best = jnp.argmax(next_q_online, axis=-1)
        next_value = jnp.take_along_axis(next_q_target, best[:, None], axis=-1)[:, 0]
    not_terminated = 1.0 - terminated.astype(reward.dtype)
    return jax.lax.stop_gradient(reward + gamma * not_terminated * next_value)


def td_loss(q_taken: jax.Array, target: jax.Array, loss: str = "huber") -> jax.Array:
    """mean ℓ(Q(s, a) − y): Huber (δ = 1) or ½ squared error. q_taken, target [B] -> []."""
    check_same_shape(q_taken=q_taken, target=target)
    if loss not in LOSSES:
        raise ValueError(f"`loss` must be one of {LOSSES}; got {loss!r}.")
    error = q_taken - target
    per_sample = optax.huber_loss(error, delta=1.0) if loss == "huber" else 0.5 * error**2
    return per_sample.mean()


def epsilon_greedy(q_network: Policy) -> Policy:
    """The ε-greedy policy of a Q-network, as a categorical policy over params {"q": θ, "epsilon": ε}:
    π(a|s) = ε / A + (1 − ε) [a = argmax_a' Q_θ(s, a')]; apply returns its log-probabilities [..., A]."""

    def apply(params, obs):
        q = q_network.apply(params["q"], obs)
        greedy = jax.nn.one_hot(jnp.argmax(q, axis=-1), q.shape[-1], dtype=q.dtype)
        epsilon = params["epsilon"]
        return jnp.log(epsilon / q.shape[-1] + (1.0 - epsilon) * greedy)

    return Policy(init=q_network.init, apply=apply, distribution=distributions.categorical)


def transitions(traj: rollout.Trajectory) -> dict:
    """The replay transitions of a window: {obs, action, reward, terminated, next_obs}, each
    [T, B, ...] flattened to [T·B, ...] (time-major order)."""
    fields = {"obs": traj.obs, "action": traj.action, "reward": traj.reward,
              "terminated": traj.terminated, "next_obs": traj.next_obs}
    return jax.tree.map(lambda x: x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:]), fields)


def epsilon_schedule(cfg: Config, env_steps: jax.Array) -> jax.Array:
    """ε after `env_steps`: linear from eps_start to eps_end over exploration_fraction × total_timesteps."""
    decay_steps = jnp.maximum(cfg.exploration_fraction * cfg.total_timesteps, 1.0)
    progress = jnp.clip(env_steps / decay_steps, 0.0, 1.0)
    return cfg.eps_start + progress * (cfg.eps_end - cfg.eps_start)


# ----------------------------------------------------------------------------- training


def make_algorithm(
    config: Config,
    progress: Callable[[dict], None] | None = None,
    env: Any = None,
    env_params: Any = None,
) -> Algorithm:
    """DQN as `Algorithm(init, update, ...)`; see `make_train` for the metrics and progress.

    `env`, `env_params`: an environment instance to train on instead of `config.env_id` (which
    is then only a label), e.g. `rlpg.envs.AliasedGridworld()`; `env_params` defaults to its
    `default_params`. Its action space must be Discrete.
    """
    config.validate()
    if env is None:
        env, env_params = rollout.make_env(config.env_id)
    elif env_params is None:
        env_params = env.default_params
    space = env.action_space(env_params)
    if not isinstance(space, spaces.Discrete):
        raise ValueError(f"`env` must have a Discrete action space for DQN; got {type(space).__name__}.")
    obs_shape = env.observation_space(env_params).shape
    q_network = policies.mlp_categorical(obs_shape, space.n, config.hidden, config.activation)
    behaviour = epsilon_greedy(q_network)
    progress = progress or print_progress

    def optimizer(cfg: Config):
        return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(cfg.lr))

    @checks_hparams(config, NUMERIC_FIELDS)
    def init(key: jax.Array, hparams: dict | None = None) -> TrainState:
        q_key, env_key, run_key = jax.random.split(key, 3)
        params = {"policy": q_network.init(q_key)}
        envs = rollout.reset(env_key, env, env_params, config.num_envs)
        example = {"obs": envs.obs[0], "action": jnp.zeros((), jnp.int32), "reward": jnp.zeros((), jnp.float32),
                   "terminated": jnp.zeros((), bool), "next_obs": envs.obs[0]}  # one transition, as `transitions` makes
        return TrainState(
            params=params,
            target_params=params["policy"] if config.target_network else None,
            opt_state=optimizer(config.replace(**hparams)).init(params),
            buffer=replay.init(example, config.buffer_size) if config.replay else None,
            envs=envs,
            key=run_key,
            update=jnp.zeros((), jnp.int32),
            grad_steps=jnp.zeros((), jnp.int32),
            hparams=hparams,
        )

    def loss_fn(params, target_params, batch: dict, cfg: Config):
        q = q_network.apply(params["policy"], batch["obs"])
        q_taken = jnp.take_along_axis(q, batch["action"][:, None], axis=-1)[:, 0]
        bootstrap = params["policy"] if target_params is None else target_params
        next_q_target = q_network.apply(jax.lax.stop_gradient(bootstrap), batch["next_obs"])
        next_q_online = q_network.apply(jax.lax.stop_gradient(params["policy"]), batch["next_obs"]) if config.double else None
        target = td_target(batch["reward"], batch["terminated"], next_q_target, cfg.gamma, next_q_online)
        return td_loss(q_taken, target, config.loss), q_taken.mean()

    def gradient_step(state: TrainState, key: jax.Array, latest: dict, cfg: Config):
        batch = replay.sample(key, state.buffer, config.batch_size) if config.replay else latest
        (loss, q_mean), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state.target_params, batch, cfg)
        updates, opt_state = optimizer(cfg).update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_steps = state.grad_steps + 1
        target_params = state.target_params
        if config.target_network:
            refreshed = optax.incremental_update(params["policy"], target_params, cfg.tau)
            refresh = grad_steps % config.target_update_every == 0
            target_params = jax.tree.map(lambda new, old: jnp.where(refresh, new, old), refreshed, target_params)
        new_state = state.replace(params=params, target_params=target_params, opt_state=opt_state, grad_steps=grad_steps)
        return new_state, (loss, q_mean)

    def learn(state: TrainState, key: jax.Array, latest: dict, cfg: Config):
        """`gradient_steps` gradient steps -> (state, mean loss, mean Q(s, a))."""
        state, (loss, q_mean) = jax.lax.scan(
            lambda s, k: gradient_step(s, k, latest, cfg), state, jax.random.split(key, config.gradient_steps)
        )
        return state, loss.mean(), q_mean.mean()

    def skip(state: TrainState, key: jax.Array, latest: dict, cfg: Config):
        return state, jnp.zeros(()), jnp.zeros(())

    def update(state: TrainState) -> tuple[TrainState, dict]:
        cfg = config.replace(**state.hparams)
        key, rollout_key, learn_key = jax.random.split(state.key, 3)
        epsilon = epsilon_schedule(cfg, state.update * config.steps_per_update)
        envs, traj = rollout.rollout(
            rollout_key, behaviour, {"q": state.params["policy"], "epsilon": epsilon},
            env, env_params, state.envs, config.train_freq,
        )
        latest = transitions(traj)
        buffer = replay.add(state.buffer, latest) if config.replay else None
        done_updates = state.update + 1
        env_steps = done_updates * config.steps_per_update
        state = state.replace(buffer=buffer, envs=envs, key=key, update=done_updates)
        state, loss, q_mean = jax.lax.cond(
            env_steps >= config.learning_starts, learn, skip, state, learn_key, latest, cfg
        )
        metrics = update_metrics(
            config, progress, done_updates, traj, loss=loss, q_mean=q_mean, epsilon=epsilon, grad_steps=state.grad_steps
        )
        return state, metrics

    return Algorithm(init, update, config.num_updates, q_network, env, env_params)


def make_train(
    config: Config,
    progress: Callable[[dict], None] | None = None,
    env: Any = None,
    env_params: Any = None,
):
    """Build `train(key, hparams=None) -> (TrainState, metrics)`.

    `metrics` holds one entry per update (arrays [num_updates]): update, env_steps,
    episode_return, episode_length, episodes (of the ε-greedy episodes that ended in the
    update's window; NaN means when none did), loss and q_mean (mean TD loss and mean Q(s, a)
    over the update's gradient steps; 0 before `learning_starts`, when no gradient step is
    taken), epsilon (ε used to act), grad_steps (gradient steps taken so far).
    With `config.log_every = K > 0`, every K updates `progress(metrics_of_that_update)` is called
    from inside the compiled program (default: print a line). `env`, `env_params`: see
    `make_algorithm`.
    """
    return train_fn(make_algorithm(config, progress, env, env_params))
