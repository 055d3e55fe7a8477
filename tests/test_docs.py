"""The docs stay true: docs/compose.md's example runs and learns; docs/api.md lists every public name;
README's command lines parse to valid configs."""

import ast
import importlib
import inspect
import pkgutil
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tyro

import rlpg

DOCS = Path(__file__).resolve().parent.parent / "docs"
README = DOCS.parent / "README.md"


def compose_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "compose.md").read_text(), re.S)
    assert len(blocks) == 1, "docs/compose.md should hold exactly one python example"
    return blocks[0]


def test_compose_example_is_under_40_lines():
    assert len(compose_example().strip().splitlines()) < 40


def test_compose_example_runs_and_learns(capsys):
    code = compose_example()
    full_size = "NUM_UPDATES, GAMMA = 8, 500, 100, 0.99"
    assert full_size in code
    namespace = {}
    exec(compile(code.replace(full_size, "NUM_UPDATES, GAMMA = 8, 500, 30, 0.99"), "docs/compose.md", "exec"), namespace)
    episode_returns = np.asarray(namespace["episode_returns"])  # [30] mean return of each update's finished episodes
    assert episode_returns.shape == (30,) and np.all(np.isfinite(episode_returns))
    print(capsys.readouterr().out)
    # A random CartPole policy lasts ~22 steps; 30 updates of the example at least double that.
    assert episode_returns[-5:].mean() > 2 * episode_returns[:5].mean(), episode_returns


def documented_modules() -> list[str]:
    """rlpg and every public module in it; rlpg.envs' submodules are documented through rlpg.envs.__all__."""
    names = [m.name for m in pkgutil.walk_packages(rlpg.__path__, "rlpg.")]
    return ["rlpg"] + [n for n in names if not any(p.startswith("_") for p in n.split(".")) and not n.startswith("rlpg.envs.")]


def public_names(module) -> list[str]:
    """`__all__`, else the names a module defines itself that do not start with an underscore."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value) and getattr(value, "__module__", module.__name__) == module.__name__
    ]


def api_sections() -> dict[str, str]:
    text = (DOCS / "api.md").read_text()
    parts = re.split(r"^## `([\w.]+)`\s*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


@pytest.mark.parametrize("module_name", documented_modules())
def test_api_md_lists_every_public_name(module_name):
    sections = api_sections()
    assert module_name in sections, f"docs/api.md has no section ## `{module_name}`"
    section = sections[module_name]
    module = importlib.import_module(module_name)
    missing = [name for name in public_names(module) if not re.search(rf"`{re.escape(name)}[`(]", section)]
    assert not missing, f"docs/api.md, section {module_name}, does not describe {missing}"
    listed = re.findall(r"^- (.*?) — ", section, flags=re.M)
    stale = [name for entry in listed for name in re.findall(r"`([A-Za-z_]\w*)", entry) if not hasattr(module, name)]
    assert not stale, f"docs/api.md, section {module_name}, lists names {module_name} does not have: {stale}"


def documented_calls(section: str) -> list[tuple[str, str]]:
    """(name, arguments) of every `name(arguments)` at the head of a section's entries."""
    return [call for entry in re.findall(r"^- (.*?) — ", section, flags=re.M)
            for call in re.findall(r"`(\w+)\(([^`]*)\)`", entry)]


def signature_mismatch(module, name: str, arguments: str) -> str | None:
    """How the documented `name(arguments)` differs from the code's signature, or None. Parameters
    are compared by name, kind and order, defaults by value (a default may name a module constant,
    or `inf`); a trailing `...` stands for further parameters, which must all have defaults."""
    more = arguments.rstrip().endswith("...")
    arguments = arguments.rstrip().removesuffix("...").rstrip().rstrip(",")
    spec = ast.parse(f"def f({arguments}): pass").body[0].args
    names = {"inf": float("inf")}

    def value(node):
        return names.get(node.id, getattr(module, node.id, None)) if isinstance(node, ast.Name) else ast.literal_eval(node)

    empty, kind = inspect.Parameter.empty, inspect.Parameter
    positional = spec.args
    defaults = [empty] * (len(positional) - len(spec.defaults)) + [value(d) for d in spec.defaults]
    documented = [(a.arg, kind.POSITIONAL_OR_KEYWORD, d) for a, d in zip(positional, defaults)]
    documented += [(spec.vararg.arg, kind.VAR_POSITIONAL, empty)] if spec.vararg else []
    documented += [(a.arg, kind.KEYWORD_ONLY, empty if d is None else value(d)) for a, d in zip(spec.kwonlyargs, spec.kw_defaults)]
    documented += [(spec.kwarg.arg, kind.VAR_KEYWORD, empty)] if spec.kwarg else []
    params = list(inspect.signature(getattr(module, name)).parameters.values())
    if more:
        rest, params = params[len(documented):], params[: len(documented)]
        if any(p.default is empty for p in rest if p.kind not in (kind.VAR_POSITIONAL, kind.VAR_KEYWORD)):
            return f"`...` hides required parameters {[p.name for p in rest]}"
    code = [(p.name, p.kind if p.kind != kind.POSITIONAL_ONLY else kind.POSITIONAL_OR_KEYWORD, p.default) for p in params]
    if [(n, k) for n, k, _ in documented] != [(n, k) for n, k, _ in code]:
        return f"parameters {[n for n, _, _ in documented]}, the code has {[str(p) for p in params]}"
    wrong = {n: c for (n, _, d), (_, _, c) in zip(documented, code) if d is not empty and not d == c}
    return f"defaults differ from the code's {wrong}" if wrong else None


@pytest.mark.parametrize("module_name", documented_modules())
def test_api_md_signatures_match_the_code(module_name):
    """Every `name(arguments)` docs/api.md gives for a function or class of the module names its
    parameters in the code's order with the code's defaults (a renamed or added argument fails here)."""
    module = importlib.import_module(module_name)
    calls = [(name, args) for name, args in documented_calls(api_sections()[module_name]) if callable(getattr(module, name, None))]
    wrong = {f"{name}({args})": why for name, args in calls if (why := signature_mismatch(module, name, args))}
    assert not wrong, f"docs/api.md, section {module_name}: {wrong}"


@pytest.mark.parametrize("module", ["returns", "estimators", "distributions", "policies", "exact", "normalization"])
def test_pure_modules_import_no_experiment_layer(module):
    """`import rlpg.<pure module>` loads none of gymnax, orbax, matplotlib, tyro or rlpg's experiment layer."""
    heavy = ("gymnax", "orbax", "matplotlib", "tyro", "rlpg.experiment", "rlpg.algos", "rlpg.rollout")
    code = f"import sys, rlpg.{module}; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def readme_train_commands() -> list[list[str]]:
    """The flags of every `python -m experiments.train ...` line of README.md, comments dropped."""
    lines = re.findall(r"^python -m experiments\.train (.*)$", README.read_text(), re.M)
    return [shlex.split(line, comments=True) for line in lines]


def test_readme_train_commands_parse_to_valid_configs():
    """A renamed flag or a value its algorithm refuses fails here, not in a reader's terminal."""
    from experiments import train

    commands = readme_train_commands()
    assert len(commands) >= 15
    for flags in commands:
        train.make_config(tyro.cli(train.Args, args=flags))


def test_readme_acrobot_command_trains_the_tested_settings():
    """README promises its Acrobot command reaches -120; test_reinforce checks it at ACROBOT."""
    from experiments import train
    from test_reinforce import ACROBOT

    (flags,) = [flags for flags in readme_train_commands() if "Acrobot-v1" in flags]
    _, config = train.make_config(tyro.cli(train.Args, args=flags))
    assert config.env_id == "Acrobot-v1" and {name: getattr(config, name) for name in ACROBOT} == ACROBOT
