"""Training algorithms.

Each module in `ALGOS` has a `Config` (static fields fix shapes, numeric ones may be swept),
`make_algorithm(config, progress=None) -> Algorithm(init, update, ...)` and
`make_train(config, progress=None) -> train(key, hparams=None) -> (state, metrics)`.
"""

from typing import Callable

import jax

from rlpg.algos import a2c, npg, ppo, reinforce
from rlpg.algos.common import Algorithm, run_updates, train_fn

ALGOS = {"reinforce": reinforce, "a2c": a2c, "ppo": ppo, "npg": npg}


def over_seeds(train: Callable, vectorize: bool = False) -> Callable:
    """`train` over a leading seed axis: `(keys [S], hparams {name: [S]} | None) -> outputs [S, ...]`.

    vectorize=False runs the seeds one after another with `lax.map` inside one program: each
    seed executes exactly the computation a lone `train(key)` compiles, so seed i of a batch
    equals that seed run alone, bit for bit. vectorize=True uses `jax.vmap`: wider operations
    (the better choice on an accelerator), but XLA picks different kernels and fusions for
    batched operations, so results agree with a lone run only to float rounding, and RL
    amplifies such differences within tens of updates.
    """
    if vectorize:
        return jax.vmap(train)
    return lambda keys, hparams=None: jax.lax.map(lambda args: train(*args), (keys, hparams))


__all__ = ["ALGOS", "Algorithm", "a2c", "npg", "over_seeds", "ppo", "reinforce", "run_updates", "train_fn"]
