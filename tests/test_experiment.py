"""The experiment CLI end to end: the run folder, refusing to overwrite, and playing a saved policy."""

import csv
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

import rlpg
from experiments import train as train_cli


EVAL_BUILD_S = 1000.0  # the run's clock jumps this much while it builds its evaluation program


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 2-seed CartPole run. Its clock (`time.perf_counter` as the CLI sees it) jumps
    EVAL_BUILD_S when the evaluation program is built, so the summary shows where that wait is
    counted: in compile_seconds, not in train_seconds nor nowhere."""
    out = tmp_path_factory.mktemp("runs") / "cartpole"
    args = train_cli.Args(num_seeds=2, total_timesteps=200_000, eval_episodes=4, log_every=25, out=out)
    jump = [0.0]
    evaluate_fn = train_cli.algos.evaluate_fn

    def slow_evaluate_fn(*evaluate_args, **evaluate_kwargs):
        jump[0] += EVAL_BUILD_S
        return evaluate_fn(*evaluate_args, **evaluate_kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_cli, "time", types.SimpleNamespace(perf_counter=lambda: time.perf_counter() + jump[0]))
        patch.setattr(train_cli.algos, "evaluate_fn", slow_evaluate_fn)
        summary = train_cli.run(args)
    return out, summary


def test_run_folder_holds_everything(run_dir):
    out, summary = run_dir
    for name in ("config.json", "metrics.csv", "summary.json", "learning_curve.png", "checkpoint"):
        assert (out / name).exists(), name
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["env_id"] == "CartPole-v1" and config["num_seeds"] == 2
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 2 * 50
    assert {"seed", "update", "env_steps", "episode_return", "loss", "entropy"} <= set(rows[0])
    assert rows[-1]["env_steps"] == "200000"
    saved = json.loads((out / "summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert len(saved["eval_return_mean"]) == 2
    assert EVAL_BUILD_S < saved["compile_seconds"] < EVAL_BUILD_S + 120 and saved["train_seconds"] < EVAL_BUILD_S
    assert saved["env_steps_per_second"] == pytest.approx(2 * 200_000 / saved["train_seconds"])
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_refuses_to_overwrite_a_run(run_dir):
    out, _ = run_dir
    before = (out / "summary.json").read_text()
    with pytest.raises(FileExistsError, match="--overwrite"):
        train_cli.run(train_cli.Args(num_seeds=1, total_timesteps=4000, out=out))
    assert (out / "summary.json").read_text() == before


def test_overwrite_replaces_only_a_run_folder(tmp_path, monkeypatch):
    """--overwrite removes a folder that holds a run (its config.json) and nothing else: not a
    folder of other files, not the working directory (a run folder one has cd'ed into)."""
    from rlpg import experiment

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.tex").write_text("months of work")
    with pytest.raises(FileExistsError, match=r"holds files but no run \(no config.json\); --overwrite replaces only a run folder"):
        experiment.prepare_run_dir(notes, overwrite=True)
    assert (notes / "thesis.tex").read_text() == "months of work"
    run = tmp_path / "run"
    run.mkdir()
    (run / experiment.CONFIG_FILE).write_text("{}")
    (run / "metrics.csv").write_text("old")
    assert experiment.prepare_run_dir(run, overwrite=True) == run and not any(run.iterdir())
    (run / experiment.CONFIG_FILE).write_text("{}")
    monkeypatch.chdir(run)
    with pytest.raises(FileExistsError, match="holds the working directory"):
        experiment.prepare_run_dir(".", overwrite=True)
    assert (run / experiment.CONFIG_FILE).exists()


def test_overwrite_keeps_the_old_run_when_the_tracker_is_missing(run_dir, tmp_path, monkeypatch):
    """The tracker's package is checked before --overwrite removes the old run."""
    from rlpg import tracking

    out = tmp_path / "old"
    out.mkdir()
    for name in ("config.json", "summary.json"):
        (out / name).write_text((run_dir[0] / name).read_text())

    def missing(module, extra):
        raise ImportError(f'`--track {extra}` needs {module}: pip install "rlpg[{extra}]"')

    monkeypatch.setattr(tracking, "_require", missing)
    with pytest.raises(ImportError, match="needs tensorboardX"):
        train_cli.run(train_cli.Args(out=out, overwrite=True, track="tensorboard", num_seeds=1, total_timesteps=4000))
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "summary.json"]


def test_load_policy_plays_in_gymnasium(run_dir):
    gym = pytest.importorskip("gymnasium")
    out, summary = run_dir
    act = rlpg.load_policy(out, seed=1)
    env = gym.make("CartPole-v1")
    returns = []
    for episode in range(3):
        obs, _ = env.reset(seed=episode)
        total, done = 0.0, False
        while not done:
            action = act(obs)
            assert action in (0, 1)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
        returns.append(total)
    print("gymnasium returns", returns, "gymnax eval", summary["eval_return_mean"][1])
    # the trained policy balances the pole in another simulator as it did in gymnax
    assert np.mean(returns) >= 0.5 * summary["eval_return_mean"][1]
    import jax

    assert act(obs, jax.random.PRNGKey(0)) in (0, 1)


def test_load_policy_rejects_bad_input(run_dir):
    out, _ = run_dir
    with pytest.raises(ValueError, match="`seed` must be in"):
        rlpg.load_policy(out, seed=2)
    with pytest.raises(ValueError, match="`obs` must be one observation of shape"):
        rlpg.load_policy(out)(np.zeros(3))
    with pytest.raises(FileNotFoundError, match="config.json"):
        rlpg.load_policy(out / "nowhere")


@pytest.mark.parametrize(
    "flags, error, words",
    [
        (dict(lr=-1.0), ValueError, "`lr` must be > 0; got -1.0"),
        (dict(num_seeds=0), ValueError, "`num_seeds` must be >= 1; got 0"),
        (dict(eval_episodes=0), ValueError, "`eval_episodes` must be >= 1; got 0"),
        (dict(checkpoint_every=-2), ValueError, "`checkpoint_every` must be >= 0"),
        (dict(algo="reinforse"), ValueError, r"`algo` must be one of \[.*'reinforce'.*\]; got 'reinforse'"),
        (dict(env="Acrobat-v1"), ValueError, "Did you mean Acrobot-v1"),
        (dict(env="Breakout-MinAtar", policy="linear"), ValueError, r"linear policy needs flat observations.*\(10, 10, 4\)"),
        (dict(policy="tabular"), ValueError, "`policy` must be one of"),
        (dict(num_envs=-8), ValueError, "`num_envs` must be a positive integer; got -8"),
        (dict(total_timesteps=10), ValueError, r"`total_timesteps` \(10\) must be at least"),
        (dict(hidden=(64, 0)), ValueError, "`hidden` must be a non-empty tuple of positive layer widths"),
        (dict(value_coef=-1.0), ValueError, "`value_coef`"),
        (dict(reward_scale=0.0), ValueError, "`reward_scale` must be > 0"),
        (dict(gamma=-0.1), ValueError, r"`gamma` must lie in \[0.0, 1.0\]; got -0.1"),
        (dict(log_every=-1), ValueError, "`log_every` must be >= 0"),
        (dict(time_limits="bootstrap", baseline="none"), ValueError, r"`time_limits`='bootstrap' .* needs baseline='value'; got baseline='none'"),
        (dict(seed=2**40), ValueError, r"`seed` must lie in \[0, 2\*\*31\) \(\+ 4 more seeds\); got 1099511627776"),
        (dict(seed=2**31 - 2), ValueError, r"`seed` must lie in \[0, 2\*\*31\)"),  # seeds + 0..4 overflow int32
        (dict(algo="ppo", returns="total"), ValueError, "`--returns` does not apply to --algo ppo"),
        (dict(algo="ppo", num_minibatches=3), ValueError, "num_minibatches"),
        (dict(algo="dqn", batch_size=0), ValueError, "batch_size"),
        (dict(algo="dqn", greedy_eval=False), ValueError, r"`greedy_eval` must be True for --algo dqn: .*softmax\(Q\)"),
    ],
)
def test_bad_flags_fail_before_training(tmp_path, flags, error, words):
    with pytest.raises(error, match=words):
        train_cli.run(train_cli.Args(out=tmp_path / "run", **flags))
    assert not (tmp_path / "run").exists()  # nothing written, nothing compiled


def test_unwritable_out_fails_before_training():
    with pytest.raises(PermissionError, match="`out` /proc/rlpg-run cannot be created"):
        train_cli.run(train_cli.Args(out=Path("/proc/rlpg-run")))


def test_resume_needs_a_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        train_cli.run(train_cli.Args(resume=tmp_path))


def test_console_entry_point_parses_flags():
    result = subprocess.run(
        [sys.executable, "-m", "experiments.train", "--help"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert result.returncode == 0
    for flag in ("--algo", "--env", "--num-seeds", "--total-timesteps", "--num-envs", "--num-steps", "--lr", "--gamma", "--seed", "--out"):
        assert flag in result.stdout, flag
    # flags generated from the Configs, with their docstrings as help (tests/test_cli.py checks them all)
    assert "--clip-eps" in result.stdout and "PPO: clipping range ε of the probability ratio" in result.stdout


def test_pyplot_keeps_a_backend_chosen_before():
    """A notebook's inline backend survives the plots of rlpg.experiment."""
    import matplotlib
    import matplotlib.pyplot as plt

    from rlpg import experiment

    before = matplotlib.get_backend()
    plt.switch_backend("svg")
    try:
        assert experiment.pyplot() is plt
        assert matplotlib.get_backend() == "svg"
    finally:
        plt.switch_backend(before)


def test_report_chunk_prints_logged_updates_over_seeds():
    from rlpg.experiment import ProgressPrinter

    lines = []
    printer = ProgressPrinter(num_seeds=3, total_updates=20, print_fn=lines.append)
    update = np.tile(np.arange(11, 16), (3, 1))  # a chunk of updates 11..15, 3 seeds
    returns = np.array([[1.0, 2.0, 3.0, 4.0, 5.0], [10.0, 20.0, 30.0, 40.0, np.nan], [7.0, 8.0, 9.0, 0.0, 2.0]])
    metrics = {"update": update, "env_steps": update * 100, "episode_return": returns, "entropy": np.full((3, 5), 0.5)}
    printer.report_chunk(metrics, log_every=5)
    assert len(lines) == 1 and lines[0].startswith("3 seeds  update    15/20  env steps      1,500")
    assert "return     3.50 [2.0, 5.0] (2 of 3 seeds)  entropy 0.500" in lines[0]  # the NaN seed left out, and said so
    printer.report_chunk(metrics, log_every=2)  # updates 12 and 14
    assert [line.split("  env")[0] for line in lines[1:]] == ["3 seeds  update    12/20", "3 seeds  update    14/20"]
    assert "return    10.00 [2.0, 20.0]  entropy" in lines[1]  # every seed finished an episode: no count
    printer.report_chunk(metrics, log_every=0)
    assert len(lines) == 3


def test_learning_curve_averages_each_seeds_latest_finished_episodes(monkeypatch, tmp_path):
    """A seed that finished no episode in an update (NaN) counts with its latest finished return:
    averaging only the seeds that finished one would drop the balancing seed (500, whose episodes
    outlast a window) in every other update and draw the weaker seed alone."""
    from rlpg import experiment

    figures = []
    monkeypatch.setattr(experiment, "save_figure", lambda fig, path: figures.append(fig))
    returns = np.array([[np.nan, 20.0, 30.0, 40.0, 50.0],
                        [500.0, np.nan, 500.0, np.nan, np.nan]])
    update = np.tile(np.arange(1, 6), (2, 1))
    experiment.plot_learning_curve(tmp_path / "curve.png", {"env_steps": 100 * update, "episode_return": returns}, "t")
    ax = figures[0].axes[0]
    mean = next(line for line in ax.lines if line.get_label() == "mean of 2 seeds")
    np.testing.assert_array_equal(mean.get_ydata(), [np.nan, 260.0, 265.0, 270.0, 275.0])  # none before seed 0's first episode
    np.testing.assert_array_equal(experiment.latest_finished_returns(returns),
                                  [[np.nan, 20.0, 30.0, 40.0, 50.0], [500.0, 500.0, 500.0, 500.0, 500.0]])


def test_begin_chunk_labels_the_seeds_of_each_chunk_from_the_first():
    """Seeds run one after another, in chunks of updates: without `begin_chunk` the second chunk's
    first seed (update 3, later than the last report) would keep the previous seed's label."""
    from rlpg.experiment import ProgressPrinter

    lines = []
    printer = ProgressPrinter(num_seeds=2, total_updates=4, print_fn=lines.append)
    for updates in ((1, 2), (3, 4)):
        printer.begin_chunk()
        for _ in range(2):
            for update in updates:
                printer({"update": update, "env_steps": 10 * update, "episode_return": 1.0})
    labels = [line.split("  env")[0] for line in lines]
    assert labels == [f"seed {seed}/2  update     {u}/4" for chunk in ((1, 2), (3, 4)) for seed in (1, 2) for u in chunk]


def test_load_policy_gives_the_action_the_evaluation_gives_the_env(tmp_path):
    """A clipped Gaussian's sample goes to the env clipped into the Box, as in the run's evaluation
    (`rollout.env_action`); `act` once returned the raw sample, out of [-2, 2] for Pendulum."""
    import jax

    from rlpg.algos import reinforce

    out = tmp_path / "pendulum"
    args = train_cli.Args(env="Pendulum-v1", num_seeds=1, total_timesteps=64, num_envs=4, num_steps=16, hidden=(8,),
                          eval_episodes=1, log_every=0, out=out)
    train_cli.run(args)
    act = rlpg.load_policy(out)
    policy = reinforce.make_algorithm(train_cli.make_config(args)[1]).policy
    params = jax.tree.map(lambda x: x[0], rlpg.experiment.restore_params(out / "checkpoint")["policy"])
    obs, keys = np.array([1.0, 0.0, 0.5], np.float32), [jax.random.PRNGKey(i) for i in range(200)]
    raw = np.array([np.asarray(policy.distribution.sample(k, policy.apply(params, obs[None]))[0]) for k in keys])
    acted = np.array([act(obs, k) for k in keys])
    assert np.any(np.abs(raw) > 2.0)  # σ ≈ 1 after 4 updates: some samples leave the Box
    np.testing.assert_allclose(acted, np.clip(raw, -2.0, 2.0), rtol=1e-6, atol=1e-6)
    assert acted.shape == (200, 1) and np.all(np.abs(acted) <= 2.0)


def test_load_policy_of_dqn_refuses_to_sample(tmp_path):
    """DQN's policy is greedy: a key would draw from softmax(Q), which the run never played (the
    CLI refuses --greedy-eval False likewise); the greedy action is argmax Q."""
    out = tmp_path / "dqn"
    train_cli.run(train_cli.Args(algo="dqn", num_seeds=1, total_timesteps=256, num_envs=4, train_freq=4, learning_starts=64,
                                 buffer_size=256, batch_size=16, hidden=(8,), eval_episodes=1, log_every=0, out=out))
    act = rlpg.load_policy(out)
    assert act(np.zeros(4, np.float32)) in (0, 1)
    with pytest.raises(ValueError, match="`key` must be None for a dqn run"):
        act(np.zeros(4, np.float32), np.zeros(2, np.uint32))
