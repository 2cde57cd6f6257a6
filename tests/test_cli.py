"""The command line: the demo (the main job) and train."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tinygrad_bp.__main__ import main


def run(*args: str, cwd: pathlib.Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tinygrad_bp", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
        timeout=600,
    )


def test_demo_shows_the_worked_example_and_writes_an_svg_and_a_page(tmp_path, dot):  # noqa: ARG001
    out = run("demo", "--no-progress", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for figure in (
        "0.593269992107187",  # out_h1
        "0.298371108760003",  # E_total
        "0.741365069552316 x 0.186815601808959 x 0.593269992107187",  # dE/dw5
        "0.000438567734474",  # dE/dw1
        "0.358916479717885",  # w5 after one step
        "0.291027773693599",  # E after one step
        "3.510187783e-05",  # E after 10,000 steps
        "0.291027924",  # the article's figure beside it
        "0.138498561628557",  # delta_o1 = dE/dnet_o1
        "0.036350306",  # the article's dE/dout_h1
        "already updated",  # why the article's later figures differ
    ):
        assert figure in text, figure
    svg = tmp_path / "tinygrad_bp_demo" / "worked_example.svg"
    assert str(svg.resolve()) in text
    root = ET.parse(svg).getroot()  # noqa: S314 - our own file
    assert root.tag.endswith("svg")
    page = tmp_path / "tinygrad_bp_demo" / "worked_example_steps.html"
    assert str(page.resolve()) in text
    assert "step 1 of 22: forward 1/11" in page.read_text(encoding="utf-8")
    assert "(laid out by dot)" in text


def test_demo_without_system_dot_still_leaves_a_picture_and_a_page(tmp_path):
    """A fresh machine: no Graphviz on PATH, only what pip installed (graphviz-pure)."""
    env = dict(os.environ, PATH=str(pathlib.Path(sys.executable).parent))
    env.pop("TINYGRAD_BP_LAYOUT", None)
    out = run("demo", "--no-progress", "--steps", "10", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    svg = tmp_path / "tinygrad_bp_demo" / "worked_example.svg"
    assert ET.parse(svg).getroot().tag.endswith("svg")  # noqa: S314 - our own file
    assert ">w5<" in svg.read_text(encoding="utf-8")  # the article's names
    assert (tmp_path / "tinygrad_bp_demo" / "worked_example_steps.html").is_file()
    assert "(laid out by graphviz-pure)" in out.stdout


def test_demo_without_any_layout_program_writes_dot_source_and_a_note(tmp_path):
    env = dict(os.environ, TINYGRAD_BP_LAYOUT="none")
    out = run("demo", "--no-progress", "--steps", "10", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    source = tmp_path / "tinygrad_bp_demo" / "worked_example.dot"
    assert source.read_text().startswith("digraph")
    assert "pip install graphviz-pure" in out.stdout


def test_train_moons_writes_a_loss_curve(tmp_path):
    pytest.importorskip("matplotlib")
    out = run("train", "--epochs", "5", "--no-progress", "--out", "curves", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    png = tmp_path / "curves" / "moons_loss.png"
    assert png.read_bytes().startswith(b"\x89PNG")
    assert "accuracy" in out.stdout


def test_train_options_reach_the_run(tmp_path):
    pytest.importorskip("matplotlib")
    out = run(
        "train", "--hidden", "4", "--optimizer", "adam", "--lr", "0.01", "--epochs", "2",
        "--batch-size", "25", "--activation", "tanh", "--engine", "scalar", "--no-progress",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "MLP(2, [4, 1]) (tanh)" in out.stdout
    assert "adam, lr 0.01" in out.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--hidden", "a,b"],
        ["train", "--epochs", "0"],
        ["train", "--lr", "-1"],
        ["train", "--data", "cifar"],
        ["train", "--optimizer", "rmsprop"],
        ["demo", "--steps", "x"],
        [],
        # issue 12, item 18: every argument is validated before anything runs
        ["train", "--lr", "nan"],
        ["train", "--lr", "inf"],
        ["train", "--momentum", "-1"],
        ["train", "--momentum", "nan"],
        ["train", "--momentum", "inf"],
        ["train", "--hidden", ",,,"],
        ["train", "--hidden", "16,,16"],
        # issue 12, item 15: the output folder is checked before training
        ["train", "--out", "/dev/null/x"],
        ["demo", "--out", "/dev/null/x"],
    ],
)
def test_bad_arguments_give_usage_and_status_2(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_missing_optional_dependency_names_the_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    code = main(["train", "--data", "digits", "--out", str(tmp_path)])
    assert code == 1
    assert "tinygrad_bp[digits]" in capsys.readouterr().err


def test_demo_with_a_failing_layout_program_falls_back_to_dot_source(tmp_path):
    env = dict(os.environ, TINYGRAD_BP_LAYOUT="/bin/false")
    out = run("demo", "--no-progress", "--steps", "2", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "tinygrad_bp_demo" / "worked_example.dot").read_text().startswith("digraph")
    page = (tmp_path / "tinygrad_bp_demo" / "worked_example_steps.html").read_text(encoding="utf-8")
    assert "step 1 of 22" in page


def test_ctrl_c_ends_with_a_line_and_status_130_not_a_traceback(monkeypatch, capsys, tmp_path):
    import tinygrad_bp.__main__ as cli

    def interrupted(_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "train", interrupted)
    assert cli.main(["train", "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err
    assert "Traceback" not in err
