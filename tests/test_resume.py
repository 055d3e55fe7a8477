"""Nothing lost: a run killed with SIGTERM resumes from its newest intact point, runs only the
remaining updates and ends with the uninterrupted run's numbers, bit for bit; damaged points,
changed configs and flags that would change the run are refused by name; a non-finite loss
stops a run with the last good resume point intact."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.wrappers.purerl import GymnaxWrapper

import rlpg
from experiments import train as train_cli
from rlpg import _xla
from rlpg import envs, experiment

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


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A real `python -m experiments.train` process stopped by SIGTERM after update 20 or later:
    (its run folder, the update of its newest resume point, its output)."""
    out = tmp_path_factory.mktemp("resume") / "stopped"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in FLAGS.items()]
    cmd = [sys.executable, "-m", "experiments.train", f"--out={out}", *flags]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    lines = []
    for line in proc.stdout:  # SIGTERM once training has passed update 20 (so two points exist)
        lines.append(line)
        if (update := progress_update(line)) is not None and update >= 20:
            proc.send_signal(signal.SIGTERM)
            break
    output = "".join(lines) + proc.stdout.read()
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM, output
    assert "--resume" in output
    stopped_at = int(experiment.latest_resume_point(out).name.split("_")[1])
    assert 20 <= stopped_at < 60, output  # it really stopped mid-way
    assert not (out / experiment.SUMMARY_FILE).exists()
    return out, stopped_at, output


def progress_update(line: str) -> int | None:
    """The update number of a progress line ("seed 1/2  update    25/60 ..."), else None."""
    words = line.split()
    if "update" not in words:
        return None
    update, _, total = words[words.index("update") + 1].partition("/")
    return int(update) if total == "60" else None


def copy_of(stopped, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(stopped[0], out)
    return out


def resume_counting_updates(out, capsys, **flags):
    """Resume the run in `out` in this process -> (summary, output, update numbers of its progress lines)."""
    capsys.readouterr()
    summary = train_cli.run(train_cli.Args(resume=out, **flags))
    output = capsys.readouterr().out
    return summary, output, [u for u in map(progress_update, output.splitlines()) if u is not None]


def assert_equals_uninterrupted(out, summary, reference):
    ref_dir, ref_summary = reference
    assert (out / experiment.METRICS_FILE).read_bytes() == (ref_dir / experiment.METRICS_FILE).read_bytes()
    assert same_tree(experiment.restore_params(out / "checkpoint"), experiment.restore_params(ref_dir / "checkpoint"))
    assert summary["eval_return_mean"] == ref_summary["eval_return_mean"]


def test_stopped_run_keeps_its_two_newest_points(stopped):
    out, stopped_at, _ = stopped
    points = [p.name for p in experiment.resume_points(out)]
    assert points == [f"update_{stopped_at - 5:07d}", f"update_{stopped_at:07d}"]
    for point in experiment.resume_points(out):
        manifest = experiment.check_manifest(point)
        assert manifest["update"] == int(point.name.split("_")[1])
        assert {"metrics.npz"} < set(manifest["files"]) and any(f.startswith("state/") for f in manifest["files"])


def test_resume_runs_only_the_remaining_updates(stopped, reference, tmp_path, capsys):
    out, stopped_at = copy_of(stopped, tmp_path), stopped[1]
    keep = out / experiment.RESUME_DIR / f"update_{stopped_at - 5:07d}_keep"  # a user's copy: not a point, never removed
    shutil.copytree(out / experiment.RESUME_DIR / f"update_{stopped_at - 5:07d}", keep)
    summary, output, updates = resume_counting_updates(out, capsys)
    assert keep.is_dir() and keep not in experiment.resume_points(out)
    assert f"update {stopped_at}/60" in output and f"update_{stopped_at:07d}" in output  # says where it continues
    # One line (over both seeds) for every 5th update after the point, and nothing before it.
    assert updates == list(range(stopped_at + 5, 61, 5)), output
    assert summary["resumed_from_update"] == stopped_at
    assert_equals_uninterrupted(out, summary, reference)
    with pytest.raises(ValueError, match="has finished"):
        train_cli.run(train_cli.Args(resume=out))


def test_damaged_newest_point_falls_back_to_the_previous_one(stopped, reference, tmp_path, capsys):
    out, stopped_at = copy_of(stopped, tmp_path), stopped[1]
    newest = experiment.latest_resume_point(out)
    with (newest / "metrics.npz").open("r+b") as f:  # one flipped byte
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.warns(UserWarning, match=f"{newest}.*metrics.npz does not match its checksum"):
        summary, output, updates = resume_counting_updates(out, capsys)
    assert f"update_{stopped_at - 5:07d}" in output
    assert updates == list(range(stopped_at, 61, 5)), output
    assert_equals_uninterrupted(out, summary, reference)


def test_no_intact_point_stops_with_a_clear_error_and_starts_nothing(stopped, tmp_path):
    out = copy_of(stopped, tmp_path)
    points = experiment.resume_points(out)
    (points[-1] / experiment.MANIFEST_FILE).unlink()  # as if killed before the manifest was written
    shutil.rmtree(points[0] / "state")
    with pytest.warns(UserWarning), pytest.raises(experiment.DamagedCheckpointError) as error:
        train_cli.run(train_cli.Args(resume=out))
    message = str(error.value)
    assert "no intact resume point" in message and "not restarted" in message
    assert points[-1].name in message and f"{points[0].name} is damaged: state/" in message
    assert experiment.resume_points(out) == points  # nothing deleted
    assert not (out / experiment.METRICS_FILE).exists() and not (out / experiment.SUMMARY_FILE).exists()


def test_a_changed_config_is_refused_naming_the_fields(stopped, tmp_path):
    out = copy_of(stopped, tmp_path)
    saved = json.loads((out / experiment.CONFIG_FILE).read_text())
    saved["args"]["num_envs"] = saved["config"]["num_envs"] = 8
    (out / experiment.CONFIG_FILE).write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"has changed since .*update_\d+ was written: args.num_envs 4 -> 8; config.num_envs 4 -> 8"):
        train_cli.run(train_cli.Args(resume=out))
    with pytest.raises(ValueError, match=r"has changed since .*update_\d+ was written: args.num_envs 4 -> 8"):
        rlpg.load_policy(out, from_resume_point=True)  # the same message, not "cannot be read"


@pytest.mark.parametrize("flags, named", [
    (dict(num_envs=8), "--num-envs"),
    (dict(out=Path("elsewhere"), lr=0.1), "--lr, --out"),
    (dict(seed=3), "--seed"),
])
def test_flags_that_change_the_run_are_refused_with_resume(stopped, flags, named):
    with pytest.raises(ValueError, match=f"{named} may not be given with it \\(only --log-every, --checkpoint-every, --track, --compile-cache may\\)"):
        train_cli.run(train_cli.Args(resume=stopped[0], **flags))


def test_flags_on_the_command_line_are_refused_even_at_their_default(stopped):
    result = subprocess.run(
        [sys.executable, "-m", "experiments.train", "--resume", str(stopped[0]), "--num-seeds", "5"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0 and "--num-seeds may not be given with it" in result.stderr, result.stderr
    argv = ["--resume", "runs/x", "--num-seeds", "5", "--log-every=20", "--no-vectorize-seeds"]
    assert train_cli.given_flags(argv) == ["resume", "num_seeds", "log_every", "vectorize_seeds"]
    with pytest.raises(ValueError, match="--num-seeds may not be given"):
        train_cli.check_resume_flags(["resume", "num_seeds", "log_every"])
    train_cli.check_resume_flags(["resume", "log_every", "checkpoint_every"])  # these may differ


def test_load_policy_of_an_unfinished_run(stopped):
    out, stopped_at, _ = stopped
    with pytest.raises(FileNotFoundError, match=f"unfinished run .*update_{stopped_at:07d}.*--resume.*from_resume_point=True"):
        rlpg.load_policy(out)
    act = rlpg.load_policy(out, seed=np.int64(1), from_resume_point=True)  # a numpy integer is a seed index too
    assert act(np.zeros(4, np.float32)) in (0, 1)


def test_load_policy_names_a_damaged_file(reference, tmp_path):
    out = tmp_path / "damaged"
    shutil.copytree(reference[0], out)
    (out / experiment.CONFIG_FILE).write_text('{"algo": "reinforce", "num_seeds": 2,')
    with pytest.raises(experiment.DamagedCheckpointError, match=r"config.json is not valid JSON \(.* at line 1"):
        rlpg.load_policy(out)
    shutil.copy(reference[0] / experiment.CONFIG_FILE, out / experiment.CONFIG_FILE)
    weights = max((p for p in (out / "checkpoint").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(experiment.DamagedCheckpointError, match=f"checkpoint is damaged: {weights.relative_to(out / 'checkpoint')} has"):
        rlpg.load_policy(out)
    (out / "checkpoint" / experiment.MANIFEST_FILE).unlink()  # no manifest to check: orbax's error, named
    with pytest.raises(experiment.DamagedCheckpointError, match="checkpoint cannot be read as an orbax checkpoint"):
        rlpg.load_policy(out)


def test_chunked_run_equals_one_program(reference, tmp_path):
    ref_dir, _ = reference
    out = tmp_path / "one-chunk"
    train_cli.run(train_cli.Args(out=out, **dict(FLAGS, checkpoint_every=0)))
    assert (out / experiment.METRICS_FILE).read_bytes() == (ref_dir / experiment.METRICS_FILE).read_bytes()
    assert not (out / experiment.RESUME_DIR).exists()


XLA_DEFAULT_OPTIMIZATION = ["--xla_backend_optimization_level=3", "--xla_cpu_use_fusion_emitters=true"]  # the user's

# Two runs of PPO with every normalization on, 4 updates each: one chunk, and chunks of one update.
ONE_UPDATE_CHUNKS = """
import json, sys
from pathlib import Path
import jax, numpy as np
from experiments import train
from rlpg import experiment
flags = dict(algo="ppo", normalize_reward=True, normalize_obs=True, anneal_lr=True, clip_value=True, num_envs=4,
             num_steps=16, total_timesteps=256, hidden=(8,), num_seeds=2, eval_episodes=2, log_every=0)
runs = {every: Path(sys.argv[1]) / f"every{every}" for every in (0, 1)}
for every, out in runs.items():
    train.run(train.Args(out=out, checkpoint_every=every, **flags))
def files(out):
    params = jax.tree.leaves(experiment.restore_params(out / experiment.CHECKPOINT_DIR))
    return (out / experiment.METRICS_FILE).read_bytes(), params
(whole_metrics, whole_params), (chunked_metrics, chunked_params) = files(runs[0]), files(runs[1])
print(json.dumps({1: [chunked_metrics == whole_metrics, all(np.array_equal(a, b) for a, b in zip(chunked_params, whole_params))]}))
"""


def test_one_update_chunks_equal_one_program(tmp_path):
    """Chunks of a single update (--checkpoint-every 1, --log-every 1, or a remainder of one) end bit
    for bit as one chunk, metrics.csv and parameters: XLA inlines a loop of one trip, which changed
    PPO's last bits until `run_updates` hid that trip count. At XLA's default optimization (a new
    process): the suite's fast-compile flags happen to give the same bits either way."""
    kept = [f for f in os.environ.get("XLA_FLAGS", "").split() if not any(name in f for name in _xla.FAST_COMPILE_CPU_FLAGS)]
    env = {**os.environ, "XLA_FLAGS": " ".join([*kept, *XLA_DEFAULT_OPTIMIZATION])}
    done = subprocess.run([sys.executable, "-c", ONE_UPDATE_CHUNKS, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    equal = json.loads(done.stdout.strip().splitlines()[-1])
    assert equal == {"1": [True, True]}, equal


class NaNRewardAfter(GymnaxWrapper):
    """CartPole whose reward turns NaN from step 150 of an episode (reached once it learns)."""

    def step(self, key, state, action, params=None):
        obs, next_state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        return obs, next_state, jnp.where(state.time >= 150, jnp.nan, reward), terminated, truncated, info


def test_nan_reward_stops_the_run_and_keeps_the_last_good_point(tmp_path, monkeypatch):
    monkeypatch.setitem(envs.REGISTRY, "NaNCartPole-v1", lambda: NaNRewardAfter(envs.make("CartPole-v1")[0]))
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
    abstract_state = jax.eval_shape(jax.vmap(module.make_algorithm(config).init), jax.random.split(jax.random.PRNGKey(0), 2),
                                    rlpg.algos.numeric_hparams(config, 2))  # the CLI's state carries them
    state, metrics = experiment.restore_resume_point(point, abstract_state)
    assert np.all(np.asarray(state.update) == good) and metrics["loss"].shape == (2, good)
    assert np.all(np.isfinite(metrics["loss"])) and all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))


@struct.dataclass
class OldTrainState:
    """PPO's training state before the algorithms shared one `TrainState`."""

    params: dict
    opt_state: Any
    envs: Any
    return_stats: dict
    key: jax.Array
    update: jax.Array
    hparams: dict


def test_a_point_of_another_state_layout_is_named_as_such_not_as_damaged(stopped, tmp_path):
    """A resume point written by an rlpg whose TrainState had other fields (before the algorithms
    shared one, PPO kept return_stats at the top) is sound: refused as another version's, its
    files untouched, never called damaged."""
    out = copy_of(stopped, tmp_path)
    module, config = train_cli.make_config(train_cli.resume_args(train_cli.Args(resume=out))[0])
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    state = jax.jit(jax.vmap(module.make_algorithm(config).init))(keys)
    old_layout = OldTrainState(state.params, state.opt_state, state.envs, {"count": jnp.zeros(2)}, state.key, state.update, state.hparams)
    point = experiment.save_resume_point(tmp_path / "old", old_layout, {"loss": np.zeros((2, 0))})
    files = sorted((p.relative_to(point), p.read_bytes()) for p in point.rglob("*") if p.is_file())
    with pytest.raises(ValueError, match=r"laid out by another rlpg version: fields \[.*'return_stats'.*\], this version's are \[.*'extra'") as error:
        experiment.restore_resume_point(point, jax.eval_shape(lambda: state))
    assert not isinstance(error.value, experiment.DamagedCheckpointError)
    assert sorted((p.relative_to(point), p.read_bytes()) for p in point.rglob("*") if p.is_file()) == files


def test_a_point_with_constant_hparams_is_refused_as_another_versions(stopped, tmp_path):
    """Before experiments.train passed the numeric Config fields as arguments, its training state
    carried empty hparams. Such a point, the run's only one, resumed by the CLI: refused as another
    version's (resuming it would mix two programs' last bits), never called damaged, files untouched."""
    out = copy_of(stopped, tmp_path)
    module, config = train_cli.make_config(train_cli.resume_args(train_cli.Args(resume=out))[0])
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(FLAGS["num_seeds"]))
    before = jax.jit(rlpg.algos.over_seeds(module.make_algorithm(config).init))(keys)  # hparams {}
    shutil.rmtree(out / experiment.RESUME_DIR)
    fingerprint = experiment.config_fingerprint(experiment.load_config(out))
    experiment.save_resume_point(out, before, {"loss": np.zeros((2, 0))}, fingerprint)
    files = sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file())
    with pytest.raises(ValueError, match=r"laid out by another rlpg version: hparams \[\], this version's are \[.*'lr'") as error:
        train_cli.run(train_cli.Args(resume=out))
    assert not isinstance(error.value, experiment.DamagedCheckpointError)
    assert sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file()) == files


def test_a_run_of_another_version_with_unknown_flags_is_refused_untouched_not_called_damaged(stopped, tmp_path):
    """config.json from an rlpg with a flag this version lacks: refused by name before anything
    compiles, as another version's (the files are sound), and nothing in the folder changes."""
    out = copy_of(stopped, tmp_path)
    saved = json.loads((out / experiment.CONFIG_FILE).read_text())
    saved["args"]["flag_of_a_later_version"] = 1
    (out / experiment.CONFIG_FILE).write_text(json.dumps(saved))
    files = sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file())
    with pytest.raises(ValueError, match=r"does not know, \['flag_of_a_later_version'\]: the run was started by another rlpg version") as error:
        train_cli.run(train_cli.Args(resume=out))
    assert not isinstance(error.value, experiment.DamagedCheckpointError)
    assert sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file()) == files


def test_a_run_cut_short_while_writing_its_final_files_resumes_and_ends_as_the_uninterrupted_one(reference, tmp_path, monkeypatch):
    """summary.json, which marks a run finished, is written last: a run stopped while it writes
    its checkpoint has none, so --resume finishes it (runs no update again) with the uninterrupted
    run's metrics and parameters; written first, --resume refused the run as finished."""
    ref_dir, ref_summary = reference
    out = tmp_path / "cut"
    save_params = experiment.save_params

    def cut_short(path, params):
        save_params(path, params)
        raise KeyboardInterrupt  # stopped right after the checkpoint, before summary.json

    monkeypatch.setattr(experiment, "save_params", cut_short)
    with pytest.raises(KeyboardInterrupt):
        train_cli.run(train_cli.Args(out=out, **FLAGS))
    assert not (out / experiment.SUMMARY_FILE).exists() and (out / experiment.CHECKPOINT_DIR).exists()
    monkeypatch.setattr(experiment, "save_params", save_params)
    summary = train_cli.run(train_cli.Args(resume=out))
    assert summary["resumed_from_update"] == 60 and summary["eval_return_mean"] == ref_summary["eval_return_mean"]
    # No update was left to train: no rate, written as JSON's null (NaN is not JSON: other readers refuse the file).
    strict = json.loads((out / experiment.SUMMARY_FILE).read_text(), parse_constant=lambda name: pytest.fail(f"{name} in summary.json"))
    assert strict["env_steps_per_second"] is None and strict["train_seconds"] == 0.0
    assert (out / experiment.METRICS_FILE).read_bytes() == (ref_dir / experiment.METRICS_FILE).read_bytes()
    assert same_tree(experiment.restore_params(out / experiment.CHECKPOINT_DIR), experiment.restore_params(ref_dir / experiment.CHECKPOINT_DIR))


def test_resume_applies_safe_flags_given_at_their_default_value(tmp_path):
    """`--resume RUN --track none` turns off the tracking the run was started with: a flag spelled
    out on the command line applies even at its default value (the CLI passes the given names)."""
    out = tmp_path / "run"
    out.mkdir()
    args = train_cli.Args(track="tensorboard", log_every=5, checkpoint_every=5, out=out)
    experiment.write_json(out / experiment.CONFIG_FILE, {"algo": args.algo, "num_seeds": args.num_seeds, "seed": args.seed,
                                                         "config": dataclasses.asdict(train_cli.make_config(args)[1]),
                                                         "args": dataclasses.asdict(args)})
    resumed, _ = train_cli.resume_args(train_cli.Args(resume=out, track="none", log_every=10, checkpoint_every=0),
                                       given=train_cli.given_flags(["--resume", str(out), "--track", "none", "--log-every=10",
                                                                    "--checkpoint-every", "0"]))
    assert (resumed.track, resumed.log_every, resumed.checkpoint_every) == ("none", 10, 0)
    kept, _ = train_cli.resume_args(train_cli.Args(resume=out, track="none"))  # in code: only values off their defaults
    assert kept.track == "tensorboard"
