"""The project's own promises: the README's two commands, CI running the README's test command, typing."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)]


def test_readme_quick_start_is_exactly_two_one_line_commands():
    commands = quick_start_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)
    assert "demo" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = quick_start_commands()[1]
    lines = [line.strip() for line in ci.splitlines()]
    assert test_command in lines
    assert "torch==2.13.0" in ci
    assert "graphviz" in ci


def test_ci_runs_the_oldest_and_newest_python_and_the_wheel():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "bash .ci/other_pythons" in ci
    assert "bash .ci/wheel" in ci
    others = (ROOT / ".ci" / "other_pythons").read_text(encoding="utf-8")
    assert "for version in 3.10 3.13" in others
    assert "is not installed" in others  # a missing interpreter fails clearly
    wheel = (ROOT / ".ci" / "wheel").read_text(encoding="utf-8")
    assert "twine check" in wheel
    assert "demo" in wheel


def test_package_is_typed():
    assert (ROOT / "tinygrad_bp" / "py.typed").exists()


def test_importing_the_package_pulls_in_no_heavy_dependency():
    code = (
        "import sys, tinygrad_bp, tinygrad_bp.nn, tinygrad_bp.losses, tinygrad_bp.optim;"
        "heavy = [m for m in ('torch', 'numpy', 'hypothesis', 'IPython', 'matplotlib') if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_module_entry_point_runs_the_demo(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "tinygrad_bp", "demo"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()


def test_bad_command_line_arguments_exit_with_status_2():
    out = subprocess.run(
        [sys.executable, "-m", "tinygrad_bp", "no-such-command"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 2
    assert "usage" in out.stderr.lower()
