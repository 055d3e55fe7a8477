"""Training over many devices with JAX's own SPMD machinery: a [seeds, envs] device mesh.

Two kinds of parallelism, one mesh axis each:

- "seeds": seeds (and hyperparameter-grid points) are independent runs. `jax.shard_map` gives
  each device its slice of the keys [S] and hparams {name: [S]}; the device runs its seeds
  with `algos.over_seeds` (`lax.map` by default), so every seed executes exactly the program
  it compiles to alone and comes out bit for bit equal to the unsharded run in the same process.
  (Across processes the backend may differ: XLA's CPU compiler emits slightly different code in
  a process with forced host devices, so a 4-device CPU process and a 1-device one agree on
  the same seed only to float rounding, sharded or not.)
- "envs": the environments of one run are data-parallel. The training state's env batch (the
  leading [num_envs] axis of every leaf of `state.envs`) is pinned to the "envs" axis with a
  sharding constraint after `init` and after every `update`; XLA's SPMD partitioner
  propagates it through the rollout, and every reduction over the batch (the loss means, hence
  the gradient average, the advantage normalization, the batch-mean baseline, the episode
  statistics) becomes a per-device partial sum and an all-reduce. This is chosen over
  `shard_map` + `lax.pmean` of the gradients because it computes the unsharded update's
  math exactly, masked and normalized means included (a pmean of per-device means would weigh
  devices equally, whatever their episode-mask counts), and needs no change to the algorithm.
  Results agree with one device up to float summation order.

Multi-host: call `jax.distributed.initialize()` first in every process; `jax.devices()` then
lists the devices of all hosts, `make_mesh` spans them, and every process runs the same
program on the same keys (docs/multihost.md).

    mesh = sharding.make_mesh(seeds=2, envs=2)              # 4 devices
    train = jax.jit(sharding.distribute(reinforce.make_algorithm(config), mesh))
    state, metrics = train(keys)                            # keys [S], S divisible by 2
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from rlpg import algos
from rlpg._checks import check_size
from rlpg.algos.common import Algorithm

SEEDS = "seeds"
ENVS = "envs"


def make_mesh(seeds: int = 1, envs: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A [seeds, envs] mesh over `devices` (default: all of `jax.devices()`), axes named
    "seeds" and "envs"; `seeds * envs` must equal the number of devices.

    Both axes are `AxisType.Auto`: the env axis relies on XLA propagating shardings.
    """
    devices = list(jax.devices() if devices is None else devices)
    seeds, envs = check_size("seeds", seeds), check_size("envs", envs)  # NumPy integers too
    if seeds * envs != len(devices):
        raise ValueError(
            f"`seeds` × `envs` must equal the number of devices ({len(devices)}); "
            f"got seeds={seeds} × envs={envs} = {seeds * envs}."
        )
    return jax.make_mesh((seeds, envs), (SEEDS, ENVS), axis_types=(AxisType.Auto, AxisType.Auto), devices=devices)


def check_divisible(mesh: Mesh, num_seeds: int | None = None, num_envs: int | None = None) -> None:
    """Raise ValueError unless num_seeds splits evenly over the "seeds" axis and num_envs over "envs"."""
    for name, count, axis in (("num_seeds", num_seeds, SEEDS), ("num_envs", num_envs, ENVS)):
        if count is not None and check_size(name, count) % mesh.shape[axis]:
            raise ValueError(
                f"`{name}` ({count}) must be divisible by the mesh's {axis!r} axis ({mesh.shape[axis]} devices)."
            )


def shard_envs(algorithm: Algorithm, mesh: Mesh) -> Algorithm:
    """`algorithm` with its env batch split over the mesh's "envs" axis (data-parallel updates).

    The state must carry its environments as `state.envs`, every leaf with a leading
    [num_envs] axis; `init` and `update` pin that axis to "envs" and leave the rest of the
    state (params, optimizer state) to XLA, which keeps it replicated.
    """
    envs_sharding = NamedSharding(mesh, PartitionSpec(ENVS))

    def constrain(state):
        if not hasattr(state, "envs"):
            raise TypeError(f"env sharding needs the training state's `envs` field; {type(state).__name__} has none.")
        check_divisible(mesh, num_envs=jax.tree.leaves(state.envs)[0].shape[0])
        return state.replace(envs=jax.lax.with_sharding_constraint(state.envs, envs_sharding))

    def init(key: jax.Array, hparams: dict | None = None):
        return constrain(algorithm.init(key, hparams))

    def update(state) -> tuple[Any, dict]:
        state, metrics = algorithm.update(state)
        return constrain(state), metrics

    return algorithm._replace(init=init, update=update)


def shard_seeds(fn: Callable, mesh: Mesh, vectorize: bool = False) -> Callable:
    """`fn` over a leading seed axis [S] of all its arguments, the seeds split over "seeds".

    Each device runs its S / seeds seeds with `algos.over_seeds(fn, vectorize)`; outputs keep
    the leading [S] axis, sharded over "seeds". `fn` may be an algorithm's `init`, its `train`,
    or a chunk of updates `state -> (state, metrics)`. jit it from outside, as `over_seeds`.
    """
    # Manual over "seeds" only, so XLA still partitions the env axis inside. check_vma=False:
    # the seeds never communicate, and a fresh state's constants are not "varying" over seeds.
    per_device = jax.shard_map(
        algos.over_seeds(fn, vectorize),
        mesh=mesh,
        in_specs=PartitionSpec(SEEDS),
        out_specs=PartitionSpec(SEEDS),
        axis_names={SEEDS},
        check_vma=False,
    )

    def sharded(*args):
        check_divisible(mesh, num_seeds=jax.tree.leaves(args)[0].shape[0])
        return per_device(*args)

    return sharded


def distribute(algorithm: Algorithm, mesh: Mesh, vectorize: bool = False) -> Callable:
    """`train(keys [S], hparams {name: [S]} | None) -> (state, metrics)` over the whole mesh.

    Seeds split over the "seeds" axis (`shard_seeds`); each run's environments split over
    "envs" (`shard_envs`). Outputs have the leading [S] axis of `over_seeds`, sharded over
    "seeds" (and `state.envs` over "envs" on its env axis). jit it from outside, as `over_seeds`.
    """
    if mesh.shape[ENVS] > 1:
        algorithm = shard_envs(algorithm, mesh)
    return shard_seeds(algos.train_fn(algorithm), mesh, vectorize)


def reporting_seeds(mesh: Mesh, num_seeds: int) -> int:
    """How many seeds' progress callbacks (`common.report`) run in this process.

    XLA runs a callback of the env-partitioned program once per seed, on the first device of
    the seed's "envs" row: all `num_seeds` in a single process, only the rows this process
    leads in a multi-host run.
    """
    check_divisible(mesh, num_seeds=num_seeds)
    rows_here = sum(row[0].process_index == jax.process_index() for row in mesh.devices)
    return num_seeds // mesh.shape[SEEDS] * rows_here


def gather(tree: Any) -> Any:
    """`tree` whole in every process: multi-host, each process holds only its devices' shards,
    so they are all-gathered into host arrays; a single process gets `tree` back as it is."""
    if jax.process_count() == 1:
        return tree
    return multihost_utils.process_allgather(tree, tiled=True)
