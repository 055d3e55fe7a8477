"""Compile once per machine: the CLI's programs land in the persistent compilation cache and a
second run loads every one of them, as does a run with other numeric fields (--lr); two runs may
share the folder at the same time."""

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tyro
from jax.experimental.compilation_cache import compilation_cache as jax_cache

from experiments import train as train_cli
from rlpg import _xla, algos, compile_cache

ROOT = Path(__file__).resolve().parents[1]

# Runs experiments.train on a tiny config in this process, counting the compiles that asked the
# persistent cache, its hits and its writes (jax's monitoring events), and noting whether jax's
# random hash then still lowers to a loop on CPU (`rlpg.unroll_threefry_on_cpu`); prints JSON.
RUN_AND_COUNT = """
import collections, json, sys
import jax
from experiments import train
from rlpg import _xla
counts = collections.Counter()
jax.monitoring.register_event_listener(lambda event, **kw: counts.update([event.rsplit("/", 1)[-1]]))
train.main()
counts["rolled_threefry"] = int(_xla.threefry_lowers_to_a_loop())
print(json.dumps(counts))
"""
TINY = ["--num-seeds=2", "--total-timesteps=768", "--num-envs=2", "--num-steps=16", "--hidden", "8",
        "--eval-episodes=1", "--log-every=8"]


def run_cli(out: Path, cache: str, *flags: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RLPG_COMPILE_CACHE": "off"}  # the flag must win over the variable
    cmd = [sys.executable, "-c", RUN_AND_COUNT, f"--out={out}", f"--compile-cache={cache}", *TINY, *flags]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def finish(proc: subprocess.Popen) -> tuple[dict, str]:
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, output
    return json.loads(output.strip().splitlines()[-1]), output


def test_second_run_loads_every_program_and_concurrent_runs_share_the_folder(tmp_path):
    cache = tmp_path / "cache"
    first = [run_cli(tmp_path / f"cold{i}", str(cache)) for i in range(2)]  # at once, on an empty folder
    cold = [finish(p) for p in first]
    for i, (counts, output) in enumerate(cold):
        assert counts["compile_requests_use_cache"] >= 3, output  # init, the chunk, the evaluation at least
        assert_reports_its_programs(tmp_path / f"cold{i}", counts, output)
        assert "persistent compilation cache" not in output.lower(), output  # no read or write warnings
        assert "2 seeds  update     8/24" in output  # progress lines, from the host
        assert counts["rolled_threefry"] == 0, output  # the CLI trains with the unrolled hash
    assert len(list(cache.glob("*-cache"))) >= 3
    warm, output = finish(run_cli(tmp_path / "warm", str(cache)))
    assert warm.get("cache_misses", 0) == 0, output  # nothing compiled afresh, so nothing written
    assert warm["cache_hits"] == warm["compile_requests_use_cache"], output  # every program came from the cache
    assert_reports_its_programs(tmp_path / "warm", warm, output)
    metrics = [(tmp_path / name / "metrics.csv").read_bytes() for name in ("cold0", "cold1", "warm")]
    assert metrics[0] == metrics[1] == metrics[2]  # a loaded program computes what the compiled one did

    # Another --lr is one program too: the numeric fields are its arguments, not constants in it.
    other, output = finish(run_cli(tmp_path / "other_lr", str(cache), "--lr=0.0123"))
    assert other.get("cache_misses", 0) == 0 and other["cache_hits"] == other["compile_requests_use_cache"], output
    assert_reports_its_programs(tmp_path / "other_lr", other, output)
    assert (tmp_path / "other_lr" / "metrics.csv").read_bytes() != metrics[0]  # the loaded program used the new lr
    assert_cli_equals_library(tmp_path / "other_lr", [*TINY, "--lr=0.0123"])


def assert_reports_its_programs(out: Path, counts: dict, output: str) -> None:
    """The run's own count of its programs (summary.json and its last line) is jax's: every
    compile request, and the cache's hits."""
    summary = json.loads((out / "summary.json").read_text())
    built, loaded = summary["xla_programs"], summary["xla_programs_from_cache"]
    assert (built, loaded) == (counts["compile_requests_use_cache"], counts.get("cache_hits", 0)), (summary, counts)
    assert f"({built} XLA programs, {loaded} from the compilation cache)" in output, output


def assert_cli_equals_library(out: Path, flags: list[str]) -> None:
    """The metrics.csv of the run of `flags`, bit for bit, is the library's
    `train(keys, numeric_hparams(config))` (chunks of log_every updates against one program), run
    here with jax's own CPU lowering of the random hash (the CLI unrolls it: the same bits)."""
    assert _xla.threefry_lowers_to_a_loop()
    args = tyro.cli(train_cli.Args, args=flags)
    module, config = train_cli.make_config(args)
    num_seeds = args.num_seeds
    train = algos.train_fn(module.make_algorithm(config.replace(log_every=0)))
    keys = jax.vmap(jax.random.PRNGKey)(args.seed + jnp.arange(num_seeds))
    _, expected = jax.jit(algos.over_seeds(train))(keys, algos.numeric_hparams(config, num_seeds))
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    for name, values in expected.items():
        cli = np.array([[float(r[name]) for r in rows if int(r["seed"]) == s] for s in range(num_seeds)])
        np.testing.assert_array_equal(cli, np.asarray(values, np.float64), err_msg=name)


def test_off_turns_the_cache_off_and_a_folder_turns_it_on(tmp_path):
    before = {name: getattr(jax.config, name) for name in ("jax_enable_compilation_cache", "jax_compilation_cache_dir")}
    try:
        for off in ("off", "OFF", "none", "0", ""):
            assert compile_cache.enable(off) is None
            assert not jax.config.jax_enable_compilation_cache
        assert compile_cache.enable(tmp_path / "c") == tmp_path / "c" and (tmp_path / "c").is_dir()
        assert jax.config.jax_enable_compilation_cache and jax.config.jax_compilation_cache_dir == str(tmp_path / "c")
    finally:
        for name, value in before.items():
            jax.config.update(name, value)
        jax_cache.reset_cache()


def test_default_folder_and_environment_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(compile_cache.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.default_dir() == str(tmp_path / "xdg" / "rlpg" / "jax")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert compile_cache.default_dir() == str(Path.home() / ".cache" / "rlpg" / "jax")
    monkeypatch.setenv(compile_cache.ENV_VAR, str(tmp_path / "moved"))
    assert compile_cache.default_dir() == str(tmp_path / "moved")


@pytest.mark.parametrize("kwargs, match", [
    (dict(min_compile_seconds=-1.0), "`min_compile_seconds` must be >= 0; got -1.0"),
    (dict(max_size_bytes=0), "`max_size_bytes` must be > 0"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        compile_cache.enable("off", **kwargs)


@pytest.mark.parametrize("num_updates, log_every, chunk", [(125, 10, 5), (120, 10, 10), (7, 10, 7), (13, 5, 1), (50, 0, 50)])
def test_progress_chunk_divides_the_run(num_updates, log_every, chunk):
    assert train_cli.progress_chunk(num_updates, log_every) == chunk


def test_xla_accepts_tells_known_flags_from_unknown_and_the_suite_sets_the_accepted_ones():
    """The guard of the suite's fast-compile flags: XLA aborts a process on a flag it does not know,
    so `xla_accepts` must start a backend to tell (importing jax alone parses no flag)."""
    assert _xla.xla_accepts(_xla.SAFE_CPU_FLAGS)  # every rlpg process runs with these
    assert not _xla.xla_accepts({"xla_cpu_no_such_flag": "true"})
    set_by_conftest = all(f"--{flag}=" in os.environ.get("XLA_FLAGS", "") for flag in _xla.FAST_COMPILE_CPU_FLAGS)
    assert set_by_conftest == _xla.xla_accepts(_xla.FAST_COMPILE_CPU_FLAGS)


def test_xla_accepts_refuses_a_probe_that_hangs(tmp_path, monkeypatch):
    """A backend that never finishes starting (here a stand-in Python that sleeps, then would
    succeed) is a refusal after `timeout_s`, so conftest goes on at XLA's defaults instead of
    hanging the suite before pytest-timeout can see it."""
    sleeper = tmp_path / "python"
    sleeper.write_text("#!/bin/sh\nexec sleep 30\n")
    sleeper.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(sleeper))
    t0 = time.perf_counter()
    assert not _xla.xla_accepts(_xla.SAFE_CPU_FLAGS, timeout_s=0.5)
    assert time.perf_counter() - t0 < 10


def test_append_flags_keeps_a_flag_already_set(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=3")
    _xla.append_flags(_xla.FAST_COMPILE_CPU_FLAGS)
    assert os.environ["XLA_FLAGS"].split() == ["--xla_backend_optimization_level=3", "--xla_cpu_use_fusion_emitters=false"]
