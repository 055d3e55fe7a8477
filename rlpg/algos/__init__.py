"""Training algorithms.

Each module in `ALGOS` has a `Config` (static fields fix shapes, numeric ones may be swept),
`make_algorithm(config, progress=None) -> Algorithm(init, update, ...)` and
`make_train(config, progress=None) -> train(key, hparams=None) -> (state, metrics)`.
"""

from typing import Callable

import jax

from rlpg.algos import a2c, apg, dqn, npg, ppo, reinforce
from rlpg.algos.common import Algorithm, run_updates, train_fn

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
    """

    def mapped(*args):
        if vectorize and jax.tree.leaves(args)[0].shape[0] > 1:
            return jax.vmap(fn)(*args)
        return jax.lax.map(lambda a: fn(*a), args)

    return mapped


__all__ = ["ALGOS", "Algorithm", "a2c", "apg", "dqn", "npg", "over_seeds", "ppo", "reinforce", "run_updates", "train_fn"]
