"""Nothing lost: a run killed with SIGTERM resumes to the same numbers, bit for bit, and a
non-finite loss stops a run with the last good resume point intact."""

import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.wrappers.purerl import GymnaxWrapper

from experiments import train as train_cli
from rlpg import envs, experiment, rollout

# 60 updates of 4 envs x 100 steps, a resume point every 5 updates.
FLAGS = dict(num_seeds=2, total_timesteps=24_000, num_envs=4, num_steps=100, checkpoint_every=5, log_every=5, eval_episodes=2)


def same_tree(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(leaves_a) == len(leaves_b) and all(np.array_equal(x, y) for x, y in zip(leaves_a, leaves_b))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "uninterrupted"
    summary = train_cli.run(train_cli.Args(out=out, **FLAGS))
    return out, summary


def test_sigterm_then_resume_is_bitwise_identical(reference, tmp_path):
    ref_dir, ref_summary = reference
    out = tmp_path / "killed"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in FLAGS.items()]
    cmd = [sys.executable, "-m", "experiments.train", f"--out={out}", *flags]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    lines = []
    for line in proc.stdout:  # SIGTERM as soon as training has begun
        lines.append(line)
        if "update " in line and "/60" in line:
            proc.send_signal(signal.SIGTERM)
            break
    output = "".join(lines) + proc.stdout.read()
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM, output
    assert "--resume" in output
    point = experiment.latest_resume_point(out)
    stopped_at = int(point.name.split("_")[1])
    assert 0 < stopped_at < 60, output  # it really stopped mid-way
    assert not (out / experiment.SUMMARY_FILE).exists()

    summary = train_cli.run(train_cli.Args(resume=out))
    assert (out / experiment.METRICS_FILE).read_bytes() == (ref_dir / experiment.METRICS_FILE).read_bytes()
    assert same_tree(experiment.restore_params(out / "checkpoint"), experiment.restore_params(ref_dir / "checkpoint"))
    assert summary["eval_return_mean"] == ref_summary["eval_return_mean"]
    with pytest.raises(ValueError, match="has finished"):
        train_cli.run(train_cli.Args(resume=out))


def test_chunked_run_equals_one_program(reference, tmp_path):
    ref_dir, _ = reference
    out = tmp_path / "one-chunk"
    train_cli.run(train_cli.Args(out=out, **dict(FLAGS, checkpoint_every=0)))
    assert (out / experiment.METRICS_FILE).read_bytes() == (ref_dir / experiment.METRICS_FILE).read_bytes()
    assert not (out / experiment.RESUME_DIR).exists()


class NaNRewardAfter(GymnaxWrapper):
    """CartPole whose reward turns NaN from step 150 of an episode (reached once it learns)."""

    def step(self, key, state, action, params=None):
        obs, next_state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        return obs, next_state, jnp.where(state.time >= 150, jnp.nan, reward), terminated, truncated, info


def test_nan_reward_stops_the_run_and_keeps_the_last_good_point(tmp_path, monkeypatch):
    monkeypatch.setitem(envs.REGISTRY, "NaNCartPole-v1", lambda: NaNRewardAfter(rollout.make_env("CartPole-v1")[0]))
    out = tmp_path / "nan"
    args = train_cli.Args(out=out, env="NaNCartPole-v1", **dict(FLAGS, total_timesteps=200_000))
    with pytest.raises(FloatingPointError, match=r"non-finite loss \(nan\) at update \d+ of seed \d") as error:
        train_cli.run(args)
    failed_at = int(str(error.value).split("at update ")[1].split()[0])
    point = experiment.latest_resume_point(out)
    assert point is not None and str(point) in str(error.value)
    good = int(point.name.split("_")[1])
    assert good < failed_at <= good + FLAGS["checkpoint_every"]
    module, config = train_cli.make_config(args)
    abstract_state = jax.eval_shape(jax.vmap(module.make_algorithm(config).init), jax.random.split(jax.random.PRNGKey(0), 2))
    state, metrics = experiment.restore_resume_point(point, abstract_state)
    assert np.all(np.asarray(state.update) == good) and metrics["loss"].shape == (2, good)
    assert np.all(np.isfinite(metrics["loss"])) and all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))
