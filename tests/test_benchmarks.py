"""The benchmarks no test runs end to end: every training config they build, at the sizes they
run, is built and validated without compiling anything. A config the library refuses would
otherwise first fail at full size, minutes in (as benchmarks.throughput's 1-env row once did);
benchmarks/gpu.sh's scripts are checked in tests/test_gpu_script.py."""

import dataclasses
import os
import subprocess

from experiments import train
from rlpg import algos
from rlpg.algos import ppo


def test_every_config_of_the_other_benchmarks_is_valid():
    from benchmarks import apg_vs_ppo, brax_ppo, cli_compile, craftax_ppo, fingerprint, ppo_targets, profile, sharding, throughput

    assert "xprof_traceme" not in os.environ.get("XLA_FLAGS", "")  # only `python -m benchmarks.profile` sets it
    for algo, num_updates in (("reinforce", 16), ("ppo", 32)):
        config = profile.CONFIGS[algo]
        assert isinstance(config, algos.ALGOS[algo].Config) and config.validate().num_updates == num_updates

    for module, overrides in apg_vs_ppo.RUNS.values():
        module.Config(env_id=apg_vs_ppo.ENV_ID, **overrides).validate()
    for env_id, run in ppo_targets.RUNS.items():
        ppo.Config(env_id=env_id, **run["config"]).validate()
    for name, (algo, fields) in fingerprint.RUNS.items():
        algos.ALGOS[algo].Config(**fields).validate()
    # brax's configs against Pendulum-v1 (a Box in [-2, 2], as tanh needs): building a brax env costs
    # 0.5-1 s each, and the adapter is tested in tests/test_adapters.py
    brax_configs = [brax_ppo.rlpg_config(name, total) for name, steps in brax_ppo.STEPS.items() for total in (steps, steps // 4)]
    brax_configs.append(brax_ppo.rlpg_config("halfcheetah", 4 * brax_ppo.NUM_ENVS * brax_ppo.UNROLL))
    for config in brax_configs:
        assert config.env_id.startswith("brax/")
        dataclasses.replace(config, env_id="Pendulum-v1").validate()
    craftax = ppo.Config(env_id=craftax_ppo.ENV_ID, total_timesteps=1_048_576, **craftax_ppo.SETTINGS).validate()
    assert craftax.num_updates % 8 == 0  # the default --chunks
    for devices in sharding.DEVICE_COUNTS:
        for layout in sharding.LAYOUTS.values():
            num_seeds, num_envs, mesh_seeds, mesh_envs = layout(devices)
            assert num_seeds % mesh_seeds == 0 and num_envs % mesh_envs == 0, (devices, layout(devices))
            for num_updates in sharding.NUM_UPDATES.values():
                assert throughput.training_config(num_envs, sharding.NUM_STEPS, num_updates).num_updates == num_updates
    train.make_config(train.Args(log_every=0))  # checkpoint_cost's runs (they differ in --checkpoint-every alone)
    for quick in (False, True):
        cli_compile.check_configs(quick)


def test_compile_flags_variants_start_jax_and_are_compared_with_the_default():
    """benchmarks.compile_flags: each variant's XLA_FLAGS start this jaxlib's CPU backend (XLA aborts
    on a flag it does not know), its training configs are valid, and a variant's numbers are
    compared with the default's first round, not with its own."""
    from benchmarks import compile_flags, ppo_vs_rejax, run_in_new_process, throughput

    for flags in dict.fromkeys(compile_flags.VARIANTS.values()):  # each distinct XLA_FLAGS once
        names = [n for n, f in compile_flags.VARIANTS.items() if f == flags]
        try:
            stdout = run_in_new_process(["-c", "import jax; print(jax.numpy.ones(3).sum())"],
                                        env=compile_flags.variant_env(flags), timeout=120)
        except subprocess.CalledProcessError as error:
            raise AssertionError(f"variants {names} ({flags!r}) do not start jax: {error.stderr[-500:]}") from error
        assert stdout.strip() == "3.0", (names, stdout)
    for num_envs, num_updates in compile_flags.TRAINING_SIZES:
        assert throughput.training_config(num_envs, 128, num_updates).num_updates == num_updates
    assert ppo_vs_rejax.rlpg_config(compile_flags.PPO_TIMESTEPS).num_updates >= 1

    def run(compile_s, returns, digest):
        return {"solve": {"compile_s": compile_s, "trace_lower_s": 0.5, "xla_s": compile_s - 0.5, "wall_s": compile_s + 2,
                          "training_returns": returns},
                "reinforce_steps_per_s": {"16": 1e5}, "deep_init_compile_s": 3.0,
                "ppo": {"first_call_s": 5.0, "steps_per_s": 9e4, "params_sha256": digest}}

    default = [run(5.0, [500.0, 418.1], "a"), run(5.5, [500.0, 418.1], "a")]
    other = [run(4.0, [500.0, 418.2], "b"), run(4.2, [500.0, 418.2], "b")]  # consistent with itself, not with the default
    summary = compile_flags.summarize(other, default)
    assert summary["solve_compile_s"] == [4.0, 4.2]
    assert not summary["solve_returns_equal_default"] and not summary["ppo_params_equal_default"]
    assert compile_flags.summarize(default, default)["ppo_params_equal_default"]
