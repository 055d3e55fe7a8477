"""Speed measurements (run as `python -m benchmarks.<name>`); never part of the test suite."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def value_range(values, fmt: str = "{:.2f}") -> str:
    """"min–max" of `values` for a results table, each formatted by `fmt`; one figure when both read alike."""
    return "–".join(dict.fromkeys(fmt.format(v) for v in (min(values), max(values))))


def run_in_new_process(args: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> str:
    """Runs `python <args>` in a new process at the repository root (the repository importable,
    this process's environment updated by `env`) and returns its stdout; a failure raises."""
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, *args], env=child_env, cwd=REPO, capture_output=True, text=True,
                          check=True, timeout=timeout).stdout
