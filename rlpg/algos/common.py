"""What every training algorithm shares: the `Algorithm` triple, the base Config and its
checks, one `TrainState`, hyperparameter overrides, the scan that makes `train(key)`, and the
per-update metrics.

An algorithm is `init(key, hparams) -> state` and `update(state) -> (state, metrics)`, pure
and jit-able; `train` runs `update` `num_updates` times in one `lax.scan`. Keeping the update
separate lets a caller run the same updates in chunks (checkpointing between them) with the
numbers of one uninterrupted scan. The on-policy algorithms are built by `rlpg.algos.on_policy`.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import math
import textwrap
import typing
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from rlpg import envs, rollout
from rlpg._checks import (
    _CHECKIFY,
    check_bool,
    check_choice,
    check_hidden,
    check_in_interval,
    check_key,
    check_number,
    check_positive,
    check_size,
)
from rlpg.policies import Activation, ContinuousActions, Policy, PolicyKind, make_policy
from rlpg.progress import ProgressPrinter


class Algorithm(NamedTuple):
    """A training algorithm built from a config.

    init: `(key, hparams=None) -> state`; the state carries `hparams` so `update` sees them.
    update: `state -> (state, metrics)`, one update; metrics are scalars.
    num_updates: how many updates `train` runs.
    policy: the acting policy; `state.params["policy"]` are its parameters.
    env, env_params: the gymnax environment it trains on.
    """

    init: Callable[..., Any]
    update: Callable[[Any], tuple[Any, dict]]
    num_updates: int
    policy: Policy
    env: Any
    env_params: Any


@struct.dataclass
class TrainState:
    """Everything a run carries from one update to the next.

    params: {"policy": ..., "value": ...} ("value" where the algorithm learns one).
    opt_state: the optimizer's state.  envs: the environments, as `rollout.reset` made them.
    extra: what the algorithm carries besides (PPO's reward normalization, DQN's target network
      and replay buffer; {} for none).
    key: the run's PRNG key.  update: [] int32, updates done so far.
    hparams: overrides of the numeric config fields (traced; {} for none).
    """

    params: dict
    opt_state: Any
    envs: rollout.EnvBatch
    extra: dict
    key: jax.Array
    update: jax.Array
    hparams: dict


def static(default: Any, **metadata: Any):
    """A static config field: fixes the program's shapes or code, so a change recompiles.
    metadata: `minimum` (an int field's least value, default 1), `allow_empty` (hidden=())."""
    return struct.field(pytree_node=False, default=default, metadata=metadata)


def numeric(default: float, low: float = 0.0, high: float = math.inf, positive: bool = False):
    """A numeric config field, traced: `hparams` may override it (one program for a sweep).
    Valid values lie in [low, high] (`positive`: > 0), finite."""
    return struct.field(default=default, metadata={"low": low, "high": high, "positive": positive})


def numeric_fields(config: Any) -> tuple[str, ...]:
    """The names of a Config's (class or instance) numeric fields, the ones `hparams` may override."""
    return tuple(f.name for f in dataclasses.fields(config) if f.metadata.get("pytree_node", True))


def numeric_hparams(config: Any, num_seeds: int | None = None) -> dict[str, jax.Array]:
    """Every numeric field of `config` (`numeric_fields`) as `hparams`: {name: the field's value},
    scalars, or arrays [num_seeds] of the value for `over_seeds`.

    Passed to `train`/`init` from outside `jax.jit`, the values are arguments of the program
    rather than constants in it: configs that differ only in them (e.g. --lr of separate runs)
    compile to one program, which the persistent compilation cache then serves to all of them.
    The numbers equal those of a sweep over the same values; against `train(key)` with the values
    as constants they may differ in the last bits (XLA folds constants)."""
    shape = () if num_seeds is None else (check_size("num_seeds", num_seeds),)
    return {name: jnp.full(shape, getattr(config, name)) for name in numeric_fields(config)}


@functools.cache
def field_types(config_class: type) -> dict[str, Any]:
    """{field: its type} of a Config class, annotations resolved (e.g. `Literal["none", "mean"]`)."""
    return typing.get_type_hints(config_class)


def field_choices(config_class: type) -> dict[str, tuple]:
    """{field: its allowed values} of a Config's `Literal`-typed fields."""
    return {
        name: typing.get_args(kind)
        for name, kind in field_types(config_class).items()
        if typing.get_origin(kind) is typing.Literal
    }


@functools.cache
def field_docs(config_class: type) -> dict[str, str]:
    """{field: its docstring}: the string literal under each field of the class and its bases
    (as tyro and Sphinx read them), whitespace collapsed."""
    docs: dict[str, str] = {}
    for cls in reversed(config_class.__mro__):
        if cls is not object and dataclasses.is_dataclass(cls):
            docs.update(_own_field_docs(cls))
    return docs


@functools.cache
def _own_field_docs(cls: type) -> dict[str, str]:
    """`field_docs` of the fields written in `cls` itself (its source read once, not once per subclass)."""
    docs: dict[str, str] = {}
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    for node, after in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


MAX_ENV_STEPS = 2**31 - 1  # per seed: the programs' int32 step counters (JAX runs without x64)


@struct.dataclass
class BaseConfig:
    """What every algorithm's Config has. Static fields fix the program's shapes; numeric ones
    are traced, so `train(key, hparams)` sweeps them in one compile. `validate` checks every
    field from its type and metadata (sizes, bools, `Literal` choices, numeric ranges)."""

    per_update_text = "num_envs × num_steps"  # how `steps_per_update` is formed, for messages (not a field)

    env_id: str = static("CartPole-v1")
    """gymnax environment id, a textbook world of rlpg.envs.REGISTRY (e.g. AliasedGridworld-v0),
    brax/<name>, craftax/<name>, or an id of rlpg.envs.register (module:id imports the module
    that registers it)"""
    num_envs: int = static(8)
    """parallel environments per seed"""
    total_timesteps: int = static(500_000)
    """environment steps per seed"""
    hidden: tuple[int, ...] = static((64, 64))
    """hidden layer widths of the MLPs"""
    activation: Activation = static("tanh")
    """activation of the MLPs' hidden layers"""
    log_every: int = static(0, minimum=0)
    """call `progress` every this many updates from inside the program (0: never)"""
    lr: float = numeric(3e-3, positive=True)
    """Adam learning rate"""
    gamma: float = numeric(0.99, 0.0, 1.0)
    """discount"""
    max_grad_norm: float = numeric(0.5, positive=True)
    """global-norm gradient clipping"""

    @property
    def steps_per_update(self) -> int:
        """Env steps (summed over the environments) of one update."""
        raise NotImplementedError

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.steps_per_update

    def validate(self):
        """Raise ValueError (TypeError for a wrong kind of value) naming the first bad field;
        returns self. Subclasses add their checks across fields after `super().validate()`."""
        types = field_types(type(self))
        for field in dataclasses.fields(self):
            name, value, kind = field.name, getattr(self, field.name), types[field.name]
            if field.metadata.get("pytree_node", True):
                if isinstance(value, (list, tuple)):  # arrays come only from hparams, one entry per seed
                    raise TypeError(f"`{name}` must be a number; got {type(value).__name__} {value!r} (to sweep it, "
                                    f"pass one value per seed in hparams: over_seeds(train)(keys, {{{name!r}: values}})).")
                if field.metadata.get("positive", False):
                    check_positive(name, value, scalar=False)
                else:  # a plain `x: float = 1.0` field: any finite number
                    check_in_interval(name, value, field.metadata.get("low", -math.inf), field.metadata.get("high", math.inf),
                                      scalar=False)
            elif kind is bool:
                check_bool(name, value)
            elif kind is int:
                check_size(name, value, minimum=field.metadata.get("minimum", 1))
            elif typing.get_origin(kind) is typing.Literal:
                check_choice(name, value, typing.get_args(kind))
            elif name == "hidden":
                check_hidden(value, allow_empty=field.metadata.get("allow_empty", False))
        if self.num_updates < 1:
            raise ValueError(
                f"`total_timesteps` ({self.total_timesteps}) must be at least one update's env steps, "
                f"{self.per_update_text} = {self.steps_per_update}."
            )
        if self.num_updates * self.steps_per_update > MAX_ENV_STEPS:
            raise ValueError(
                f"`total_timesteps` ({self.total_timesteps:,}) must be at most {MAX_ENV_STEPS:,} env steps per "
                f"seed: programs count them (metrics' env_steps, DQN's ε schedule) in int32, which would wrap around."
            )
        self.check_env(*envs.make(self.env_id))  # unknown ids fail here, naming close ones
        return self

    def check_env(self, env: Any, env_params: Any) -> None:
        """Raise ValueError if the algorithm cannot train on this env (e.g. its action space)."""


@struct.dataclass
class OnPolicyConfig(BaseConfig):
    """The config of an on-policy algorithm: windows of `num_steps` steps of each environment,
    acted in by a policy that fits the env's action space (`policies.make_policy`)."""

    num_steps: int = static(128)
    """steps per environment per update (the rollout window)"""
    policy: PolicyKind = static("mlp")
    """policy family: an MLP, or linear in the observation (softmax or Gaussian)"""
    continuous_actions: ContinuousActions = static("clip")
    """Box actions: clip Gaussian samples into the bounds, or squash them with tanh (a tanh-Gaussian policy)"""
    normalize_obs: bool = static(False)
    """standardize observations with one running mean/variance over every env and step, kept in the
    policy's parameters (params["policy"] = {"net", "obs_stats"}); the value network sees the same"""

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.num_steps

    def check_env(self, env: Any, env_params: Any) -> None:
        make_policy(env, env_params, self.hidden, self.activation, self.policy, self.continuous_actions)


def check_hparams(hparams: dict | None, config: Any) -> dict:
    """`hparams` as a dict, after checking it overrides only the config's numeric fields
    (`numeric_fields`), each with a number (TypeError naming the field otherwise), and that
    `config.replace(**hparams).validate()` accepts the values: the Config's own checks and
    messages, on the values that are concrete (traced ones are checked only under
    `rlpg.checked`). Values may be arrays, e.g. one per seed: each entry is checked."""
    hparams = dict(hparams or {})
    allowed = numeric_fields(config)
    unknown = set(hparams) - set(allowed)
    if unknown:
        raise ValueError(f"`hparams` may override only {allowed}; got {sorted(unknown)}.")
    for name, value in hparams.items():
        check_number(name, value)
    traced = all(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(hparams))
    if hparams and (_CHECKIFY.get() or not traced):  # traced values: only `checked` checks them
        # Under jit, validate's own constant work (building the env and policy) runs eagerly
        # rather than being staged: a tabular env converts its tables with numpy.
        with jax.ensure_compile_time_eval():
            config.replace(**hparams).validate()
    return hparams


def checks_hparams(config: Any) -> Callable:
    """Decorator for an algorithm's `init(key, hparams)`: checks `key` (`check_key`) and passes
    `check_hparams(hparams, config)`; the hparams check stays reachable as
    `init.check_hparams(hparams)`, which `over_seeds` and `train_fn` use on the host."""

    def decorate(init: Callable) -> Callable:
        check = functools.partial(check_hparams, config=config)

        @functools.wraps(init)
        def checked_init(key: jax.Array, hparams: dict | None = None):
            check_key("key", key)
            hparams = check(hparams)
            for name, value in hparams.items():  # one seed's: over_seeds hands each seed its entry
                if jnp.ndim(value) != 0:
                    raise ValueError(f"`hparams[{name!r}]` must be a scalar for one seed's train/init; got shape "
                                     f"{jnp.shape(value)} (one value per seed: over_seeds(train)(keys, hparams)).")
            return init(key, hparams)

        checked_init.check_hparams = check
        return checked_init

    return decorate


def train_fn(algorithm: Algorithm) -> Callable:
    """`train(key, hparams=None) -> (state, metrics)`: init, then `num_updates` updates in one scan.

    metrics: the per-update metrics stacked, arrays [num_updates].
    """

    def train(key: jax.Array, hparams: dict | None = None):
        state = algorithm.init(key, hparams)
        return run_updates(algorithm.update, state, algorithm.num_updates)

    if hasattr(algorithm.init, "check_hparams"):
        train.check_hparams = algorithm.init.check_hparams
    return train


def run_updates(update: Callable, state: Any, num_updates: int):
    """`num_updates` updates from `state` in one loop -> (state, metrics [num_updates]).

    The same numbers, bit for bit, however a run is cut into calls (chunks of updates): XLA
    compiles a loop body alike for every trip count it cannot remove, but inlines a loop of one
    trip into the program, where other fusions change the last bits. A single update therefore
    runs as a loop whose trip count XLA cannot see."""
    if num_updates != 1:
        return jax.lax.scan(lambda s, _: update(s), state, None, length=num_updates)
    metrics = jax.tree.map(lambda m: jnp.zeros((1,) + m.shape, m.dtype), jax.eval_shape(update, state)[1])
    trips = jax.lax.optimization_barrier(jnp.int32(1))

    def body(carry):
        i, state, metrics = carry
        state, new = update(state)
        return i + 1, state, jax.tree.map(lambda m, x: m.at[i].set(x), metrics, new)

    _, state, metrics = jax.lax.while_loop(lambda carry: carry[0] < trips, body, (jnp.int32(0), state, metrics))
    return state, metrics


def report(progress: Callable[[dict], None], log_every: int, metrics: dict) -> None:
    """Call `progress(metrics)` from inside the program when metrics["update"] % log_every == 0."""
    if log_every:
        jax.lax.cond(
            metrics["update"] % log_every == 0,
            lambda m: jax.debug.callback(progress, m),
            lambda m: None,
            metrics,
        )


def update_metrics(config: Any, progress: Callable[[dict], None], update: jax.Array, traj: Any, **stats) -> dict:
    """One update's metrics, reported every `config.log_every` updates (see `report`):
    update, env_steps (= update × config.steps_per_update), the mean return, length and count of
    the episodes that finished in `traj` (`rollout.episode_stats`), and the scalars in `stats`."""
    metrics = {
        "update": update,
        "env_steps": update * config.steps_per_update,
        **rollout.episode_stats(traj),
        **stats,
    }
    report(progress, config.log_every, metrics)
    return metrics


def default_progress(config: Any) -> Callable[[dict], None]:
    """The progress callback `make_algorithm` uses when given none: a `ProgressPrinter` line
    (update k/num_updates, env steps, return, entropy or ε, seconds) per logged update."""
    return ProgressPrinter(num_seeds=1, total_updates=config.num_updates)
