"""experiments.train's command line is generated from the Configs of rlpg.algos.ALGOS: one flag per
field, its type (Literal choices) from the annotation and its help from the docstring, checked
through the real parser (tyro) without training."""

import dataclasses
import re
from typing import Literal

import pytest
import tyro
from flax import struct

from experiments import train as train_cli
from rlpg import algos
from rlpg.algos import common
from rlpg.algos.common import OnPolicyConfig, numeric, static


def help_by_flag(args_class, monkeypatch, capsys) -> dict[str, str]:
    """{'--flag': its help text, whitespace collapsed} from the parser's own `--help` output."""
    monkeypatch.setenv("COLUMNS", "500")  # no wrapping inside a help line
    with pytest.raises(SystemExit) as exit_info:
        tyro.cli(args_class, args=["--help"])
    assert exit_info.value.code == 0
    helps, flag = {}, None
    for line in capsys.readouterr().out.splitlines():
        line = line.strip("│").rstrip()  # boxed on a terminal, plain under pytest's capture
        option = re.match(r"^ {0,3}(--?[a-z][\w-]*)", line)
        if option:  # an option line: its flags and metavar
            flag = option.group(1)
            helps[flag] = ""
        elif flag is not None and line.startswith("    "):  # a line of the option's help
            helps[flag] = " ".join(f"{helps[flag]} {line}".split())
    return helps


def parse(args_class, *argv):
    return tyro.cli(args_class, args=list(argv))


def refuses(args_class, capsys, *argv) -> str:
    """The parser's error output for `argv`, after checking it exits with status 2."""
    with pytest.raises(SystemExit) as exit_info:
        parse(args_class, *argv)
    assert exit_info.value.code == 2
    return " ".join(capsys.readouterr().err.replace("│", " ").split())


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def test_every_config_field_is_a_flag_with_its_docstring(monkeypatch, capsys):
    helps = help_by_flag(train_cli.Args, monkeypatch, capsys)
    seen = 0
    for algo, module in algos.ALGOS.items():
        for name, doc in common.field_docs(module.Config).items():
            assert doc, f"{algo}.Config.{name} has no docstring"
            name = train_cli.SET_BY_SCRIPT_FLAG.get(name, name)
            assert flag(name) in helps, (algo, name)
            if name not in train_cli.SCRIPT_FLAGS:
                assert doc in helps[flag(name)], (algo, name, helps[flag(name)])
                assert helps[flag(name)].endswith("(default: None)")  # None: the algorithm's own default
                seen += 1
        missing = {f.name for f in dataclasses.fields(module.Config)} - set(common.field_docs(module.Config))
        assert not missing, f"{algo}.Config fields without a docstring: {missing}"
    assert seen >= 80  # every field of every algorithm, not a few
    # the flags are the union of the fields and the script's own, nothing else
    config_fields = {name for m in algos.ALGOS.values() for name in common.field_types(m.Config)}
    expected = {flag(n) for n in config_fields - set(train_cli.SET_BY_SCRIPT_FLAG)} | {flag(n) for n in train_cli.SCRIPT_FLAGS}
    assert set(helps) - {"-h"} == expected


def test_help_names_the_algorithms_a_flag_applies_to(monkeypatch, capsys):
    helps = help_by_flag(train_cli.Args, monkeypatch, capsys)
    assert helps["--gamma"] == "discount (default: None)"  # every algorithm, one docstring: no prefix
    assert helps["--clip-eps"].startswith("PPO: clipping range ε of the probability ratio")
    assert helps["--critic-lr"].startswith("APG: Adam learning rate of the critic")
    assert helps["--ent-coef"].startswith("REINFORCE, A2C, PPO: weight of the entropy bonus")
    # docstrings that differ: each algorithm's own, after its name
    assert helps["--normalize-advantages"].startswith(
        "A2C, NPG: standardize the advantages of each batch; PPO: standardize the advantages of each minibatch"
    )
    lr = helps["--lr"]
    assert "NPG: Adam learning rate of the value network" in lr
    assert re.search(r"REINFORCE, A2C, PPO, DQN, APG: Adam learning rate;", lr), lr
    assert "--activation" in helps and "--normalize-obs" in helps  # fields without a hand-written flag


def test_flags_take_the_fields_types_and_choices(capsys):
    Args = train_cli.Args
    literal_fields = {}
    for module in algos.ALGOS.values():
        literal_fields.update(common.field_choices(module.Config))
    assert {"returns", "baseline", "policy", "continuous_actions", "activation", "loss"} <= set(literal_fields)
    for name, choices in literal_fields.items():
        for choice in choices:
            assert getattr(parse(Args, flag(name), choice), name) == choice
        error = refuses(Args, capsys, flag(name), "bogus")
        assert flag(name) in error and "bogus" in error, error
    args = parse(Args, "--algo", "ppo", "--hidden", "32", "32", "--normalize-obs", "True", "--clip-eps", "0.1", "--num-envs", "4")
    assert (args.hidden, args.normalize_obs, args.clip_eps, args.num_envs) == ((32, 32), True, 0.1, 4)
    assert args.lr is None and args.baseline is None and args.log_every == 10  # unset: the algorithm's default
    assert "--num-envs" in refuses(Args, capsys, "--num-envs", "1.5")
    assert "--normalize-obs" in refuses(Args, capsys, "--normalize-obs", "maybe")


def test_algo_choices_are_the_registry(capsys):
    for name in algos.ALGOS:
        assert parse(train_cli.Args, "--algo", name).algo == name
    assert parse(train_cli.Args).algo == "reinforce"
    error = refuses(train_cli.Args, capsys, "--algo", "reinforse")
    assert "--algo" in error and all(name in error for name in algos.ALGOS), error


@struct.dataclass
class ToyConfig(OnPolicyConfig):
    temperature: float = numeric(1.0, positive=True)
    """softmax temperature of the toy's policy"""
    flavour: Literal["plain", "spicy"] = static("plain")
    """the toy's flavour"""


@struct.dataclass
class ClashingConfig(OnPolicyConfig):
    lr: int = static(3)
    """an integer learning rate"""


def test_a_registered_algorithm_gets_its_flags(monkeypatch, capsys):
    toy = type(algos)("toy")
    toy.Config = ToyConfig
    monkeypatch.setitem(algos.ALGOS, "toy", toy)  # what registering an algorithm does
    Args = train_cli.make_args(algos.ALGOS)
    helps = help_by_flag(Args, monkeypatch, capsys)
    assert helps["--temperature"] == "TOY: softmax temperature of the toy's policy (default: None)"
    assert helps["--flavour"].startswith("TOY: the toy's flavour")
    assert helps["--num-steps"].startswith("REINFORCE, A2C, PPO, NPG, TOY: steps per environment")
    assert parse(Args, "--algo", "toy", "--flavour", "spicy").flavour == "spicy"
    assert "--flavour" in refuses(Args, capsys, "--flavour", "mild")
    module, config = train_cli.make_config(Args(algo="toy", temperature=2.0, num_envs=2, num_steps=4, total_timesteps=8))
    assert module is toy and (config.temperature, config.num_envs, config.log_every) == (2.0, 2, 10)
    with pytest.raises(ValueError, match="`--temperature` does not apply to --algo ppo"):
        train_cli.make_config(Args(algo="ppo", temperature=2.0))
    # the module's own Args, built before the registration, knows nothing of it
    assert not hasattr(train_cli.Args(), "temperature")


def test_a_field_typed_differently_by_two_algorithms_is_refused(monkeypatch):
    clash = type(algos)("clash")
    clash.Config = ClashingConfig
    with pytest.raises(TypeError, match="`lr` is <class 'int'> in clash"):
        train_cli.config_flags({**algos.ALGOS, "clash": clash})


@pytest.mark.parametrize("algo", list(algos.ALGOS))
def test_env_defaults_to_the_algorithms_own(algo):
    """Without --env each algorithm trains on its Config's env_id (APG's is Pendulum-v1: a CartPole
    default refused APG's default run); --env still sets it."""
    _, config = train_cli.make_config(parse(train_cli.Args, "--algo", algo))
    assert config.env_id == algos.ALGOS[algo].Config().env_id
    _, config = train_cli.make_config(parse(train_cli.Args, "--algo", algo, "--env", config.env_id))
    assert config.env_id == algos.ALGOS[algo].Config().env_id


def test_resume_refuses_generated_flags():
    argv = ["--resume", "runs/x", "--clip-eps=0.1", "--activation", "relu", "--log-every", "5"]
    given = train_cli.given_flags(argv)
    assert given == ["resume", "clip_eps", "activation", "log_every"]
    with pytest.raises(ValueError, match="--activation, --clip-eps may not be given"):  # sorted
        train_cli.check_resume_flags(given)


@pytest.mark.parametrize("argv, message", [
    (["--baseline", "none", "--time-limits", "bootstrap"], "`time_limits`='bootstrap' continues a truncated episode"),
    (["--num-seeds", "0"], "`num_seeds` must be >= 1; got 0."),
    (["--algo", "dqn", "--ent-coef", "0.01"], "`--ent-coef` does not apply to --algo dqn."),
    (["--track", "wandb", "--resume", "{tmp}/elsewhere"], "elsewhere/config.json not found"),
    (["--out", "{tmp}/notes"], "holds files but no run"),
])
def test_main_refuses_a_command_line_in_one_line_before_anything_runs(argv, message, tmp_path, monkeypatch, capsys):
    """A refused flag value, folder or run is one `rlpg-train: error: ...` line on stderr and exit
    status 2 (as tyro's own refusals), not a traceback; nothing is written or removed."""
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "draft.txt").write_text("mine")
    monkeypatch.setattr(train_cli.compile_cache, "enable", lambda folder: None)  # keep this process's cache
    monkeypatch.setattr(train_cli, "unroll_threefry_on_cpu", lambda: None)
    monkeypatch.setattr(train_cli, "train", lambda setup, programs: pytest.fail("refused arguments reached training"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["rlpg-train", *(a.format(tmp=tmp_path) for a in argv)])
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("rlpg-train: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert message in err
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["notes", "notes/draft.txt"]


def test_main_trains_what_prepare_set_up(tmp_path, monkeypatch):
    """`main` hands the Setup of its own flags to training (the refusal path changed nothing else)."""
    trained = []
    monkeypatch.setattr(train_cli.compile_cache, "enable", lambda folder: None)
    monkeypatch.setattr(train_cli, "unroll_threefry_on_cpu", lambda: None)
    monkeypatch.setattr(train_cli, "train", lambda setup, programs: trained.append(setup))
    monkeypatch.setattr("sys.argv", ["rlpg-train", "--algo", "ppo", "--num-seeds", "2", "--out", str(tmp_path / "run")])
    train_cli.main()
    (setup,) = trained
    assert (setup.args.algo, setup.args.num_seeds, setup.out, setup.found) == ("ppo", 2, tmp_path / "run", None)
    assert setup.config == train_cli.algos.ALGOS["ppo"].Config(log_every=train_cli.ScriptArgs.log_every).validate()
    assert (tmp_path / "run" / "config.json").exists()


def test_seed_by_seed_compiles_one_seed_and_gives_what_the_loop_over_seeds_gives():
    """On one device the CLI compiles each program for one seed and calls it per seed: a program
    traced with the seed axis (compiled for all seeds), or seed 0's inputs given to every seed,
    fails here; the loop over the seeds in one program (`algos.over_seeds`) is the reference."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    traced = []

    def fn(key, hparams):
        traced.append((key.shape, hparams["lr"].shape))
        x = jax.random.normal(key, (3,)) * hparams["lr"]
        return {"x": x, "sum": x.sum()}, jax.random.split(key)[0]

    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(4))
    hparams = {"lr": jnp.array([1.0, 2.0, 3.0, 4.0])}
    run = train_cli.compile_over_seeds(fn, (keys, hparams), mesh=None, vectorize=False)  # as the CLI on one device
    got = run(keys, hparams)
    assert traced == [((2,), ())]  # traced once, with one seed's shapes,
    assert jax.tree.map(lambda arg: arg.shape, run.compiled.args_info) == (((2,), {"lr": ()}), {})  # compiled so
    expected = jax.jit(algos.over_seeds(fn))(keys, hparams)
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)  # the same computation per seed, on one machine
