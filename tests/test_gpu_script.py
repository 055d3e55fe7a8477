"""benchmarks/gpu.sh runs end to end: its --tiny mode, on this CPU, writes every result file."""

import json
import os
import subprocess
import sys
from pathlib import Path

import tyro

ROOT = Path(__file__).resolve().parents[1]
GPU_PPO_TIMESTEPS = 262_144  # benchmarks/gpu.sh runs ppo_vs_rejax at its default --total-timesteps


def test_gpu_script_tiny_writes_every_table(tmp_path):
    env = {**os.environ, "RLPG_RESULTS": str(tmp_path), "RLPG_COMPILE_CACHE": str(tmp_path / "cache"), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--tiny"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    throughput = json.loads((tmp_path / "throughput-cpu-tiny.json").read_text())
    assert [(e["num_envs"], e["num_seeds"]) for e in throughput["grid"]] == [(4, 1), (4, 2)]
    assert all(e["steps_per_s"] > 0 for e in throughput["grid"])
    ppo = json.loads((tmp_path / "ppo-vs-rejax-tiny.json").read_text())
    assert ppo["rlpg"]["steps_per_s"] > 0 and ppo["rejax"] is None
    determinism = json.loads((tmp_path / "determinism-cpu-tiny.json").read_text())
    assert "--xla_gpu_deterministic_ops=true" in determinism["xla_flags"]
    assert determinism["identical"], determinism  # two processes, compiled afresh: bit for bit
    for stem in ("throughput-cpu-tiny", "ppo-vs-rejax-tiny", "determinism-cpu-tiny"):
        assert (tmp_path / f"{stem}.md").read_text().startswith("# ")


def test_every_config_of_the_full_size_runs_is_valid():
    """The configs that `benchmarks/gpu.sh` and `benchmarks.throughput` train at full size, built
    and validated without compiling anything. The --tiny run above builds none of them: a 1-env row
    that the default config refuses once crashed the full run at its first measurement."""
    from benchmarks import determinism, ppo_vs_rejax, throughput
    from experiments import train

    for mode in (dict(grid=True), dict(), dict(quick=True), dict(tiny=True, grid=True)):
        plan = throughput.sizes(**mode)
        runs = plan["envs"] + plan["seeds"] + plan["grid"] + ([plan["lr_grid"]] if plan["lr_grid"] else [])
        for num_envs, num_updates, *_ in runs:
            config = throughput.training_config(num_envs, 128, num_updates)
            assert config.num_updates == num_updates and config.num_envs == num_envs
    for flags in [*determinism.RUNS.values(), *determinism.TINY.values()]:
        train.make_config(tyro.cli(train.Args, args=flags))
    assert ppo_vs_rejax.rlpg_config(GPU_PPO_TIMESTEPS).num_updates >= 1
