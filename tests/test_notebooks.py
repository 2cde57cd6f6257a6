"""The lesson notebooks: stored with their outputs, and still running top to bottom.

The notebooks in ``notebooks/`` are generated and executed by ``scripts/build_notebooks.py``
and stored with their outputs. These tests

* check the stored files: every code cell was executed and kept its outputs (nobody stripped
  them), and no stored output is an error;
* re-execute every notebook headless with nbclient, in a fresh kernel of the interpreter that
  runs pytest, in a temporary directory, without touching the stored file, and fail on the
  first cell that raises (or on an error output, or when a notebook takes too long).

Without nbclient, nbformat or ipykernel they skip with a reason (a failure instead when
TINYGRAD_BP_REQUIRE_ORACLES=1, as in CI).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
BUILD_SCRIPT = ROOT / "scripts" / "build_notebooks.py"
EXPECTED = [
    "00_quickstart.ipynb",
    "01_perceptrons.ipynb",
    "02_worked_example.ipynb",
    "03_minibatch_network.ipynb",
    "04_himmelblau_adam.ipynb",
    "05_training.ipynb",
    "06_exercises.ipynb",
    "07_the_articles_code.ipynb",
]


def _require(module: str) -> object:
    try:
        return importlib.import_module(module)
    except ImportError:
        reason = f"{module} is not installed (pip install -e '.[notebooks]')"
        if os.environ.get("TINYGRAD_BP_REQUIRE_ORACLES") == "1":
            pytest.fail(f"{reason}, but TINYGRAD_BP_REQUIRE_ORACLES=1 says it must be present")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def nbformat():
    return _require("nbformat")


@pytest.fixture(scope="module")
def builder():
    """scripts/build_notebooks.py as a module: the tests run notebooks exactly as the build does."""
    for module in ("nbformat", "nbclient", "ipykernel", "jupyter_client"):
        _require(module)
    spec = importlib.util.spec_from_file_location("build_notebooks", BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _errors(nb) -> list[str]:
    """Every error output of ``nb``, as 'cell i: ename: evalue'."""
    return [
        f"cell {i}: {output.get('ename')}: {output.get('evalue')}"
        for i, cell in enumerate(nb.cells)
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]


def test_every_notebook_is_there():
    stored = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))
    assert stored == EXPECTED


def test_the_build_script_defines_every_stored_notebook(builder):
    assert list(builder.NOTEBOOKS) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_stored_notebook_has_outputs_and_no_errors(name, nbformat):
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    nbformat.validate(nb)
    cells = [c for c in nb.cells if c.cell_type == "code"]
    assert cells, f"{name} has no code cells"
    assert nb.cells[0].cell_type == "markdown", f"{name} should open with a markdown introduction"
    unexecuted = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.execution_count is None]
    assert not unexecuted, (
        f"{name}: cells {unexecuted} were not executed (outputs stripped?): run scripts/build_notebooks.py"
    )
    with_outputs = [c for c in cells if c.outputs]
    assert len(with_outputs) >= len(cells) // 2, f"{name}: most code cells have no stored outputs"
    assert not _errors(nb), f"{name} stores error outputs: {_errors(nb)}"
    stderr = [
        i
        for i, c in enumerate(nb.cells)
        for o in c.get("outputs", [])
        if o.get("output_type") == "stream" and o.get("name") == "stderr"
    ]
    assert not stderr, f"{name}: cells {stderr} stored warnings or other stderr output"
    counts = [c.execution_count for c in cells]
    assert counts == list(range(1, len(cells) + 1)), f"{name} was not run top to bottom in one go: {counts}"


@pytest.mark.parametrize("name", EXPECTED)
def test_stored_graphs_are_pictures_an_untrusted_notebook_shows(name, nbformat):
    """No stored HTML carries an inline <svg> (a sanitiser strips it to a wall of text); graphs are <img>."""
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            page = output.get("data", {}).get("text/html", "")
            assert "<svg" not in page, f"{name}, cell {i}: an inline <svg> in stored HTML"
            plain = output.get("data", {}).get("text/plain", "")
            assert "VBox(" not in plain, f"{name}, cell {i}: a widget stored as its repr"


def test_stored_notebooks_are_small():
    for name in EXPECTED:
        size = (NOTEBOOK_DIR / name).stat().st_size
        assert size < 1_000_000, f"{name} is {size / 1e6:.1f} MB: keep stored outputs small"


def test_notebooks_run_on_this_interpreter_in_the_given_directory(builder, nbformat, tmp_path):
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("import os, sys\nprint(sys.executable)\nprint(os.getcwd())")]
    )
    builder.execute(nb, tmp_path)
    executable, cwd = nb.cells[0].outputs[0]["text"].splitlines()
    assert executable == sys.executable  # the venv's python, not whatever "python3" kernelspec is found
    assert Path(cwd).resolve() == tmp_path.resolve()


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs_top_to_bottom_twice_in_one_kernel(name, builder, nbformat, tmp_path):
    """A reader's Run All, then Run All again in the same kernel (custom ops are defined twice, ...)."""
    path = NOTEBOOK_DIR / name
    before = path.read_bytes()
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    for cell in code:  # start from a clean slate, as a reader would
        cell.outputs = []
        cell.execution_count = None
    again = [nbformat.v4.new_code_cell(cell.source) for cell in code]
    nb.cells = [*nb.cells, *again]
    builder.execute(nb, tmp_path)  # raises CellExecutionError on failure
    assert not _errors(nb), _errors(nb)
    assert again[-1].execution_count == 2 * len(code)
    assert path.read_bytes() == before, "executing a notebook must not touch the stored file"
    assert not any(p.suffix == ".ipynb" for p in tmp_path.iterdir())
