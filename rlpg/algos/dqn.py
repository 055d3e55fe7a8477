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
`rollout.evaluate`, `rlpg.load_policy` and `experiments.train` use DQN like any policy. Play
its mode: a sample of that categorical is softmax(Q), neither ε-greedy nor anything DQN learned
(`experiments.train` refuses `--greedy-eval False` for DQN).

`train(key, hparams)` is pure; the numeric fields (`NUMERIC_FIELDS`) may be overridden by
traced arrays to sweep them in one program, as for every algorithm in `rlpg.algos`.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from rlpg import envs, policies, replay, rollout
from rlpg.algos import optim
from rlpg._checks import check_positive
from rlpg.algos.common import (
    Algorithm,
    BaseConfig,
    TrainState,
    checks_hparams,
    default_progress,
    numeric,
    numeric_fields,
    static,
    train_fn,
    update_metrics,
)
from rlpg.value_learning import TDLoss, td_loss, td_target


@struct.dataclass
class Config(BaseConfig):
    """DQN configuration. Static fields fix the program's shapes; numeric ones are traced.

    Counts: `total_timesteps`, `learning_starts` and `buffer_size` are in env steps (summed
    over the environments); `train_freq` in steps of each environment per update;
    `target_update_every` in gradient steps. `hidden=()` makes Q linear in the observation.
    """

    num_envs: int = static(4)
    total_timesteps: int = static(200_000)
    hidden: tuple[int, ...] = static((64, 64), allow_empty=True)
    activation: policies.Activation = static("relu")
    train_freq: int = static(16)
    """steps of each environment per update"""
    gradient_steps: int = static(8)
    """gradient steps per update"""
    buffer_size: int = static(10_000)
    """replay buffer capacity (transitions)"""
    batch_size: int = static(128)
    """transitions per gradient step, sampled from the buffer"""
    learning_starts: int = static(10_000, minimum=0)
    """env steps before the first gradient step"""
    target_update_every: int = static(50)
    """gradient steps between target-network refreshes"""
    replay: bool = static(True)
    """learn from a replay buffer (else from each update's latest transitions only)"""
    target_network: bool = static(True)
    """bootstrap from a target network (else from the online network)"""
    double: bool = static(False)
    """double DQN (the online network selects the bootstrap action, the target evaluates it)"""
    loss: TDLoss = static("mse")
    """TD loss: ½ squared error, or Huber (δ = 1). At the other defaults Huber's Q diverges on
    CartPole-v1 (seed 100: mean Q 850 after 200k steps, above the 1/(1 − γ) = 100 any return
    allows) and solves 0 of 20 seeds; at lr 2e-3, 6 of 20"""
    # lr 5e-4 with exploration_fraction 0.1: the greedy policy solves CartPole-v1 (return >= 475)
    # within 200k steps in 54 of 60 seeds (100-119, 200-219, 300-319); 45 of 60 at 2.5e-4 and 0.25
    # (experiments/results/dqn_defaults).
    lr: float = numeric(5e-4, positive=True)
    max_grad_norm: float = numeric(10.0, positive=True)
    eps_start: float = numeric(1.0, 0.0, 1.0)
    """initial ε of the ε-greedy policy"""
    eps_end: float = numeric(0.05, 0.0, 1.0)
    """final ε"""
    exploration_fraction: float = numeric(0.1, 0.0, 1.0)
    """fraction of total_timesteps over which ε decays linearly"""
    tau: float = numeric(1.0, 0.0, 1.0)
    """target refresh θ⁻ ← τθ + (1 − τ)θ⁻ (1: copy)"""

    per_update_text = "num_envs × train_freq"

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.train_freq

    def validate(self) -> "Config":
        """Raise ValueError naming the first bad field; returns self."""
        super().validate()
        if self.replay and self.buffer_size < self.steps_per_update:
            raise ValueError(
                f"`buffer_size` ({self.buffer_size}) must hold at least one update's transitions, "
                f"num_envs × train_freq = {self.steps_per_update}."
            )
        if self.learning_starts > self.num_updates * self.steps_per_update:
            raise ValueError(
                f"`learning_starts` ({self.learning_starts}) must be at most the run's "
                f"{self.num_updates * self.steps_per_update} env steps, or no gradient step is taken."
            )
        check_positive("tau", self.tau, scalar=False)  # one per seed when swept
        return self

    def check_env(self, env: Any, env_params: Any) -> None:
        check_discrete(env, env_params)


NUMERIC_FIELDS = numeric_fields(Config)


def check_discrete(env: Any, env_params: Any) -> None:
    """ValueError unless the env's action space is Discrete (Q(s, ·) is a vector over actions)."""
    space = env.action_space(env_params)
    if not hasattr(space, "n"):
        raise ValueError(f"`env` must have a Discrete action space for DQN; got {type(space).__name__}.")


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

    state.extra = {"target_params": θ⁻ (None without a target network: θ bootstraps itself),
    "buffer": the `replay.ReplayBuffer` (None without replay), "grad_steps": [] int32 gradient
    steps taken so far}.
    """
    config.validate()
    if env is None:
        env, env_params = envs.make(config.env_id)
    elif env_params is None:
        env_params = env.default_params
    check_discrete(env, env_params)
    obs_shape = env.observation_space(env_params).shape
    q_network = policies.mlp_categorical(obs_shape, env.action_space(env_params).n, config.hidden, config.activation)
    behaviour = policies.epsilon_greedy(q_network)
    progress = progress or default_progress(config)

    def optimizer(cfg: Config):
        return optim.clipped_adam(cfg.lr, cfg.max_grad_norm)

    @checks_hparams(config)
    def init(key: jax.Array, hparams: dict | None = None) -> TrainState:
        q_key, env_key, run_key = jax.random.split(key, 3)
        params = {"policy": q_network.init(q_key)}
        batch = rollout.reset(env_key, env, env_params, config.num_envs)
        example = {"obs": batch.obs[0], "action": jnp.zeros((), jnp.int32), "reward": jnp.zeros((), jnp.float32),
                   "terminated": jnp.zeros((), bool), "next_obs": batch.obs[0]}  # one transition, as `transitions` makes
        extra = {
            "target_params": params["policy"] if config.target_network else None,
            "buffer": replay.init(example, config.buffer_size) if config.replay else None,
            "grad_steps": jnp.zeros((), jnp.int32),
        }
        return TrainState(
            params=params,
            opt_state=optimizer(config.replace(**hparams)).init(params),
            envs=batch,
            extra=extra,
            key=run_key,
            update=jnp.zeros((), jnp.int32),
            hparams=hparams,
        )

    def loss_fn(params, target_params, batch: dict, cfg: Config):
        q = q_network.apply(params["policy"], batch["obs"])
        q_taken = jnp.take_along_axis(q, batch["action"][:, None], axis=-1)[:, 0]
        bootstrap = params["policy"] if target_params is None else target_params
        next_q_target = q_network.apply(jax.lax.stop_gradient(bootstrap), batch["next_obs"])
        next_q_online = q_network.apply(jax.lax.stop_gradient(params["policy"]), batch["next_obs"]) if config.double else None
        target = td_target(batch["reward"], batch["terminated"], next_q_target, cfg.gamma, next_q_online)
        return td_loss(q_taken, target, config.loss), {"q_mean": q_taken.mean()}

    def gradient_step(state: TrainState, key: jax.Array, latest: dict, cfg: Config):
        extra = state.extra
        batch = replay.sample(key, extra["buffer"], config.batch_size) if config.replay else latest
        params, opt_state, stats = optim.optimizer_step(
            optimizer(cfg), loss_fn, state.params, state.opt_state, extra["target_params"], batch, cfg
        )
        grad_steps = extra["grad_steps"] + 1
        target_params = extra["target_params"]
        if config.target_network:
            refreshed = optax.incremental_update(params["policy"], target_params, cfg.tau)
            refresh = grad_steps % config.target_update_every == 0
            target_params = jax.tree.map(lambda new, old: jnp.where(refresh, new, old), refreshed, target_params)
        extra = {**extra, "target_params": target_params, "grad_steps": grad_steps}
        return state.replace(params=params, opt_state=opt_state, extra=extra), (stats["loss"], stats["q_mean"])

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
        batch, traj = rollout.rollout(
            rollout_key, behaviour, {"q": state.params["policy"], "epsilon": epsilon},
            env, env_params, state.envs, config.train_freq,
        )
        latest = transitions(traj)
        buffer = replay.add(state.extra["buffer"], latest) if config.replay else None
        done_updates = state.update + 1
        env_steps = done_updates * config.steps_per_update
        state = state.replace(envs=batch, extra={**state.extra, "buffer": buffer}, key=key, update=done_updates)
        state, loss, q_mean = jax.lax.cond(
            env_steps >= config.learning_starts, learn, skip, state, learn_key, latest, cfg
        )
        metrics = update_metrics(
            config, progress, done_updates, traj, loss=loss, q_mean=q_mean, epsilon=epsilon,
            grad_steps=state.extra["grad_steps"],
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
