"""Training algorithms.

Each module in `ALGOS` has a `Config` (static fields fix shapes, numeric ones may be swept),
`make_algorithm(config, progress=None) -> Algorithm(init, update, ...)` and
`make_train(config, progress=None) -> train(key, hparams=None) -> (state, metrics)`.
REINFORCE, A2C, PPO and NPG are learning steps on one skeleton (`on_policy`); all share the base
Config, `TrainState`, metrics and hyperparameter checks of `common` and the optimizers of `optim`.
A new on-policy algorithm is one module and one line in `ALGOS` (docs/extending.md).
"""

from typing import Callable

import jax
import numpy as np

from rlpg import rollout
from rlpg.algos import a2c, apg, dqn, npg, on_policy, optim, ppo, reinforce
from rlpg.algos.common import Algorithm, TrainState, numeric_hparams, run_updates, train_fn

ALGOS = {"reinforce": reinforce, "a2c": a2c, "ppo": ppo, "npg": npg, "dqn": dqn, "apg": apg}


def over_seeds(fn: Callable, vectorize: bool = False) -> Callable:
    """`fn` over a leading seed axis of all its arguments, e.g. `train`:
    `(keys [S], hparams {name: [S]} | None) -> outputs [S, ...]`, or an algorithm's `init`, or a
    chunk of updates `state -> (state, metrics)` over states [S, ...].

    vectorize=False runs the seeds one after another with `lax.map` inside one program: each
    seed executes exactly the computation a lone `fn` compiles, so seed i of a batch
    equals that seed run alone, bit for bit. vectorize=True uses `jax.vmap`: wider operations
    (the better choice on an accelerator), but XLA picks different kernels and fusions for
    batched operations, so results agree with a lone run only to float rounding, and RL
    amplifies such differences within tens of updates. A single seed always runs as `lax.map`:
    a batch of one gains nothing from vmap, whose size-1 batch axes make XLA's CPU kernels slower.
    Outside a program, where the seeds may as well be separate calls, `fn` compiled for one seed
    and called per seed gives the same numbers and compiles about a third faster (the map slices
    and stacks every leaf inside its loop): `experiments.train.compile_over_seeds`, which
    `rlpg-train` uses on one device.

    On the host (concrete arguments) it first checks that every argument has the same leading
    seed axis, naming the one that differs, and, when `fn` is a `train` or `init` of
    `rlpg.algos`, the hyperparameters with the Config's own checks (`fn.check_hparams`).
    """

    def mapped(*args):
        check = getattr(fn, "check_hparams", None)
        if check is not None and len(args) > 1:
            check(args[1])
        _check_seed_axis(args)
        if vectorize and jax.tree.leaves(args)[0].shape[0] > 1:
            return jax.vmap(fn)(*args)
        return jax.lax.map(lambda a: fn(*a), args)

    return mapped


def make_evaluate(algorithm: Algorithm, num_episodes: int, greedy: bool = True, vectorize: bool = False) -> Callable:
    """A jitted `evaluate(keys [S], policy_params [S, ...]) -> returns [S, num_episodes]`: seed i's
    policy plays `num_episodes` whole episodes from reset with `keys[i]` (`rollout.evaluate` in
    `algorithm.env`; the mode of the distribution when `greedy`, else samples).

    Seeds as in `over_seeds`: with vectorize=False, seed i's returns are those of
    `rollout.evaluate` on seed i alone, bit for bit (and the program compiles faster than its
    vmap on a CPU).
    """

    return jax.jit(over_seeds(evaluate_fn(algorithm, num_episodes, greedy), vectorize))


def evaluate_fn(algorithm: Algorithm, num_episodes: int, greedy: bool = True) -> Callable:
    """One seed's `evaluate(key, policy_params) -> returns [num_episodes]` (`rollout.evaluate`
    in `algorithm.env`), as `train_fn` is one seed's train; `make_evaluate` runs it over seeds."""

    def evaluate(key, policy_params):
        return rollout.evaluate(key, algorithm.policy, policy_params, algorithm.env, algorithm.env_params, num_episodes, greedy)

    return evaluate


def _check_seed_axis(args: tuple) -> None:
    """ValueError naming the argument whose leading (seed) axis differs from the first one's."""
    leaves = jax.tree_util.tree_flatten_with_path(args)[0]
    shapes = [(path, np.shape(leaf)) for path, leaf in leaves]
    for path, shape in shapes[1:]:
        first_path, first_shape = shapes[0]
        if shape[:1] != first_shape[:1]:
            raise ValueError(
                f"`{_path_name(path)}` must have the seed axis first, of size {first_shape[:1]} as "
                f"`{_path_name(first_path)}`; got shape {shape}."
            )


def _path_name(path) -> str:
    """`lr` for hparams["lr"], else the argument's position and key path, e.g. `args[0]`."""
    last = path[-1] if path else None
    if isinstance(last, jax.tree_util.DictKey) and isinstance(last.key, str):
        return last.key
    return "args" + jax.tree_util.keystr(path)


__all__ = [
    "ALGOS", "Algorithm", "TrainState", "a2c", "apg", "dqn", "evaluate_fn", "make_evaluate", "npg", "numeric_hparams", "on_policy", "optim",
    "over_seeds", "ppo", "reinforce", "run_updates", "train_fn",
]
