"""Which layout program draws: the system dot first, else graphviz-pure, else a clear error."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tinygrad_bp import layout
from tinygrad_bp.errors import GraphvizNotFoundError, LayoutError

GRAPH = "digraph { a -> b }"


def test_the_system_dot_is_the_first_choice(dot, monkeypatch):
    monkeypatch.delenv(layout.ENVIRONMENT_VARIABLE, raising=False)
    assert layout.find_program() == dot


def test_without_dot_graphviz_pure_beside_the_interpreter_is_found(monkeypatch):
    monkeypatch.delenv(layout.ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.setenv("PATH", "")
    program = layout.find_program()
    assert program is not None
    assert Path(program).parent == Path(sys.executable).parent
    assert Path(program).name.startswith("graphviz-pure")
    assert layout.run(GRAPH, "svg").startswith(b"<?xml")


@pytest.mark.parametrize("choice", ["dot", "graphviz-pure"])
def test_the_environment_variable_chooses(choice, dot, monkeypatch):  # noqa: ARG001 - needs both
    monkeypatch.setenv(layout.ENVIRONMENT_VARIABLE, choice)
    assert Path(layout.find_program()).name == choice
    svg = layout.run(GRAPH, "svg").decode("utf-8")
    assert "<svg" in svg
    assert ("graphviz-pure" in svg) == (choice == "graphviz-pure")


def test_none_behaves_as_if_nothing_were_installed(monkeypatch):
    monkeypatch.setenv(layout.ENVIRONMENT_VARIABLE, "none")
    assert layout.find_program() is None
    with pytest.raises(GraphvizNotFoundError, match="pip install graphviz-pure"):
        layout.run(GRAPH, "svg")


def test_a_program_that_cannot_run_is_a_layout_error(monkeypatch, tmp_path):
    not_a_program = tmp_path / "dot"
    not_a_program.write_text("not a program")
    os.chmod(not_a_program, 0o644)  # noqa: PTH101 - plain permission bits
    monkeypatch.setenv(layout.ENVIRONMENT_VARIABLE, str(not_a_program))
    with pytest.raises(LayoutError, match="could not be run"):
        layout.run(GRAPH, "svg")


def test_several_graphs_in_one_run_come_back_in_order():
    sources = [f'digraph g{k} {{ n{k} [label="node {k}"] }}' for k in range(5)]
    documents = layout.run_many(sources)
    assert len(documents) == 5
    for k, document in enumerate(documents):
        assert f"node {k}" in document
        assert document.count("<svg") == 1
    assert layout.run_many([]) == []
