"""Training algorithms: each `make_train(config) -> train(key, hparams=None) -> (state, metrics)`."""

from rlpg.algos import reinforce

ALGOS = {"reinforce": reinforce}

__all__ = ["ALGOS", "reinforce"]
