"""The benchmark scripts run (a quick smoke run: no timing is asserted, machines here are noisy)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("script", ["bench_engine.py"])  # bench_tape.py: tests/test_tape.py
def test_benchmark_script_runs_and_prints_its_targets(script, tmp_path):
    pytest.importorskip("numpy")
    pytest.importorskip("micrograd")
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "targets" in out.stdout
    assert "(c)" in out.stdout
