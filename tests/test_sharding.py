"""rlpg.sharding on 4 forced CPU devices: seed sharding is bitwise, env sharding agrees to
rounding, the arrays really are split, and bad meshes fail with clear errors.

The checks run once, in a subprocess started with
XLA_FLAGS=--xla_force_host_platform_device_count=4 (this file run as a script, printing JSON),
so the rest of the suite keeps its single device and the compiles are paid once.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rlpg  # noqa: F401  (its XLA CPU flags go in before the backend starts)
import jax
import jax.numpy as jnp
from experiments import train as train_cli
from rlpg import algos, sharding
from rlpg.algos import reinforce

NUM_DEVICES = 4
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report():
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={NUM_DEVICES}"
    env = dict(os.environ, XLA_FLAGS=flags.strip())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_subprocess_sees_four_devices(report):
    assert report["devices"] == NUM_DEVICES


def test_seed_sharding_is_bitwise_equal_to_over_seeds(report):
    arrays = report["meshes"]["4x1"]["arrays"]
    assert arrays.keys() == report["reference"].keys() and len(arrays) > 10  # every metric and param leaf
    for name, ref in report["reference"].items():
        np.testing.assert_array_equal(arrays[name], ref, err_msg=name)


def test_env_sharding_agrees_with_one_device_to_float_tolerance(report):
    """2 seeds x 2 env halves per device pair. Same random streams, so the same episodes; the
    batch means differ from one device's only in summation order."""
    run = report["meshes"]["2x2"]
    for name, ref in report["reference"].items():
        np.testing.assert_allclose(run["arrays"][name], ref, rtol=1e-4, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(run["arrays"]["episodes"], report["reference"]["episodes"])
    assert run["all_reduces"] > 0  # the batch means are cross-device reductions


@pytest.mark.parametrize(
    "mesh, metric_shard, envs_shard",
    [("4x1", [1, 3], [1, 8]), ("2x2", [2, 3], [2, 4])],
)
def test_outputs_are_split_over_the_devices(report, mesh, metric_shard, envs_shard):
    """metrics [S=4, num_updates=3] split on the seed axis; state.envs.obs [S, num_envs=8, 4] on both."""
    run = report["meshes"][mesh]
    assert run["loss_shards"] == [metric_shard] * NUM_DEVICES
    assert run["obs_shards"] == [envs_shard + [4]] * NUM_DEVICES
    assert run["obs_devices"] == NUM_DEVICES


@pytest.mark.parametrize("mesh", ["4x1", "2x2"])
def test_progress_reports_once_per_seed_and_update(report, mesh):
    """Not once per device: an env-sharded seed reports from one device of its row."""
    run = report["meshes"][mesh]
    assert run["reporting_seeds"] == 4
    assert run["progress_calls"] == [1] * 4 + [2] * 4 + [3] * 4


@pytest.mark.parametrize(
    "case, words",
    [
        ("mesh_too_big", "`seeds` × `envs` must equal the number of devices \\(4\\); got seeds=4 × envs=2 = 8"),
        ("mesh_not_positive", "`envs` must be a positive integer; got 0"),
        ("num_seeds", "`num_seeds` \\(6\\) must be divisible by the mesh's 'seeds' axis \\(4 devices\\)"),
        ("num_envs", "`num_envs` \\(6\\) must be divisible by the mesh's 'envs' axis \\(4 devices\\)"),
    ],
)
def test_bad_mesh_or_batch_is_a_clear_error(report, case, words):
    assert re.search(words, report["errors"][case]), report["errors"][case]


def test_train_cli_splits_envs_over_chunks_as_one_device(report):
    """rlpg-train with --mesh-envs 2 runs all its chunks (PPO with reward normalization, whose
    per-env carry changes layout between chunks) and ends where the one-device run ends."""
    one, split = report["cli"]["one"], report["cli"]["envs2"]
    assert split["metrics"]["env_steps"] == one["metrics"]["env_steps"] and len(one["metrics"]["env_steps"]) == 6
    for key in ("episode_return", "entropy"):
        np.testing.assert_allclose(split["metrics"][key], one["metrics"][key], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(split["params"], one["params"], rtol=1e-4, atol=1e-5)


def test_train_cli_device_flags_fail_before_training(tmp_path):
    """In this (one-device) process: bad --devices/--mesh-envs stop before a run folder exists."""
    with pytest.raises(ValueError, match="`--mesh-envs` \\(2\\) needs `--devices all`"):
        train_cli.run(train_cli.Args(mesh_envs=2, out=tmp_path / "a"))
    with pytest.raises(ValueError, match=f"`--mesh-envs` must divide the number of devices \\({jax.device_count()}\\); got 0"):
        train_cli.run(train_cli.Args(devices="all", mesh_envs=0, out=tmp_path / "b"))
    assert not any((tmp_path / name).exists() for name in "ab")


def _checks() -> dict:
    """Run every sharded variant and the unsharded reference; return what the tests assert."""

    def as_lists(state, metrics) -> dict:
        params = {f"params{jax.tree_util.keystr(p)}": x for p, x in jax.tree.leaves_with_path(state.params)}
        return {name: np.asarray(x).tolist() for name, x in {**metrics, **params}.items()}

    calls = []  # the update number of every progress report
    config = reinforce.Config(num_envs=8, num_steps=32, total_timesteps=8 * 32 * 3, hidden=(16,), log_every=1)
    algorithm = reinforce.make_algorithm(config, progress=lambda m: calls.append(int(m["update"])))
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(4))
    hparams = {"lr": jnp.array([1e-3, 3e-3, 1e-2, 3e-2])}  # a grid axis rides along the seeds
    reference = as_lists(*jax.jit(algos.over_seeds(algos.train_fn(algorithm)))(keys, hparams))

    meshes = {}
    for seeds, envs in [(4, 1), (2, 2)]:
        mesh = sharding.make_mesh(seeds=seeds, envs=envs)
        compiled = jax.jit(sharding.distribute(algorithm, mesh)).lower(keys, hparams).compile()
        calls.clear()
        state, metrics = jax.block_until_ready(compiled(keys, hparams))
        jax.effects_barrier()
        meshes[f"{seeds}x{envs}"] = {
            "arrays": as_lists(state, metrics),
            "all_reduces": compiled.as_text().count("all-reduce("),
            "loss_shards": [list(s.data.shape) for s in metrics["loss"].addressable_shards],
            "obs_shards": [list(s.data.shape) for s in state.envs.obs.addressable_shards],
            "obs_devices": len({s.device for s in state.envs.obs.addressable_shards}),
            "progress_calls": sorted(calls),
            "reporting_seeds": sharding.reporting_seeds(mesh, 4),
        }

    def error(fn) -> str:
        try:
            fn()
        except ValueError as e:
            return str(e)
        return "no error"

    six_keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(6))
    six_envs = reinforce.make_algorithm(config.replace(num_envs=6, total_timesteps=6 * 32))
    errors = {
        "mesh_too_big": error(lambda: sharding.make_mesh(seeds=4, envs=2)),
        "mesh_not_positive": error(lambda: sharding.make_mesh(seeds=4, envs=0)),
        "num_seeds": error(lambda: jax.jit(sharding.distribute(algorithm, sharding.make_mesh(4, 1))).lower(six_keys)),
        "num_envs": error(lambda: jax.jit(sharding.distribute(six_envs, sharding.make_mesh(1, 4))).lower(keys)),
    }
    return {"devices": jax.device_count(), "reference": reference, "meshes": meshes, "errors": errors,
            "cli": _cli_runs()}


CLI_FLAGS = ["--algo", "ppo", "--normalize-reward", "True", "--num-seeds", "2", "--num-envs", "8", "--num-steps", "16",
             "--total-timesteps", "384", "--hidden", "8", "--log-every", "1", "--eval-episodes", "2"]


def _cli_runs() -> dict:
    """experiments.train in three chunks of one update, on one device and with each run's envs over
    2 devices: PPO's reward normalization carries a per-env return that XLA lays out anew after a
    chunk, which a precompiled chunk program once refused at the second chunk. Returns each
    run's params (flattened) and metrics.csv columns."""
    import csv
    import tempfile

    import tyro

    from rlpg import experiment

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in (("one", ["--devices", "one"]), ("envs2", ["--devices", "all", "--mesh-envs", "2"])):
            run_dir = Path(tmp) / name
            train_cli.run(tyro.cli(train_cli.Args, args=[*CLI_FLAGS, *flags, f"--out={run_dir}"]))
            params = experiment.restore_params(run_dir / experiment.CHECKPOINT_DIR)
            with open(run_dir / experiment.METRICS_FILE) as f:
                rows = list(csv.DictReader(f))
            out[name] = {"params": np.concatenate([np.ravel(x) for x in jax.tree.leaves(params)]).tolist(),
                         "metrics": {k: [float(r[k]) for r in rows] for k in ("episode_return", "entropy", "env_steps")}}
    return out


if __name__ == "__main__":
    print(json.dumps(_checks()))
