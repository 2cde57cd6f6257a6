"""Drawing graphs: DOT structure, SVG parsed as XML, clusters, collapse, subgraphs, the size guard, hostile labels."""

from __future__ import annotations

import base64
import re
import subprocess
import xml.etree.ElementTree as ET

import graphviz
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_bp as tg
from tinygrad_bp import display, layout, viz
from tinygrad_bp.errors import GraphTooLargeError, GraphvizNotFoundError, LayoutError
from tinygrad_bp.losses import half_sse
from tinygrad_bp.nn import MLP
from tinygrad_bp.worked_example import BIASES, INPUTS, TARGETS, WEIGHTS
from tinygrad_bp.worked_example import build as build_worked_example

SVG = "{http://www.w3.org/2000/svg}"

HOSTILE = [
    "</text><script>alert(1)</script>",
    '<svg onload="alert(1)">',
    '"quoted" and \\"escaped\\"',
    "{record|fields} <port>",
    "<<B>bold</B>>",
    "&amp; &lt; &#0; &#x41; &bogus;",
    "back\\slash \\\\ double \\n \\l \\N",
    "two\nlines\n\nand a blank one",
    "\x00\x07\x1b[31m\x7f\x85\r\t",
    "unicode: \u00fcn\u00efc\u00f8d\u00e9 \u2713 \U0001f642 \u202e rtl \u2028",
    "lone surrogate \ud800 and \ufffe \uffff",
    "]]> --> <!-- <![CDATA[ x ]]>",
    "   leading and trailing spaces   ",
    "]",  # Graphviz 2.43 merged a lone "]" into the next cell's text
    "a\n]",
    "",
]


def worked_example():
    """REFERENCE section 4's 2-2-2 sigmoid network, labelled by module (layer1.neuron0.w0, ...).

    The network of tinygrad_bp.worked_example carries the article's names instead; the drawing's
    clusters and collapse= need module paths, which every nn model has.
    """
    w, (b1, b2) = WEIGHTS, BIASES
    model = MLP.from_weights(
        [[[w[0], w[1]], [w[2], w[3]]], [[w[4], w[5]], [w[6], w[7]]]],
        [[b1, b1], [b2, b2]],
        activation="sigmoid",
        output_activation="sigmoid",
    )
    error = half_sse(model(list(INPUTS)), list(TARGETS))
    error.label = "E"
    return model, error


def test_the_worked_example_is_drawn_in_the_articles_names():
    example = build_worked_example()
    _, error = example.forward()
    names = {t for g in groups(parse(viz.to_svg(error)), "node") for t in texts(g)}
    assert {"i1", "i2", "t1", "t2", "w1", "w8", "b1", "b2", "net_h1", "out_o2", "E_o1", "E_total"} <= names


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg.encode("utf-8"))  # noqa: S314 - our own SVG; parsing it strictly is the test


def groups(root: ET.Element, kind: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == kind]


def title(group: ET.Element) -> str:
    return group.find(f"{SVG}title").text


def texts(group: ET.Element) -> list[str]:
    return [(t.text or "") for t in group.iter(f"{SVG}text")]


def node_texts(root: ET.Element) -> dict[str, list[str]]:
    return {title(g): texts(g) for g in groups(root, "node")}


def edge_titles(root: ET.Element) -> list[str]:
    return [title(g) for g in groups(root, "edge")]


def no_script(root: ET.Element) -> bool:
    return not any(
        el.tag.lower().endswith("script") or el.tag.lower().endswith("foreignobject") for el in root.iter()
    )


def same_text(lines: list[str]) -> list[str]:
    """Graphviz writes runs of spaces as space + no-break space and drops empty lines."""
    return [line.replace("\u00a0", " ") for line in lines if line]


def run_dot(dot: str, source: str) -> str:
    result = subprocess.run(
        [dot, "-Tsvg"], input=source.encode("utf-8"), capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == b"", result.stderr  # Graphviz reports a rejected HTML label on stderr
    return result.stdout.decode("utf-8")


def snapshot(root):
    return [(n.data, n.grad, n.label, n.op, n.inputs, n.requires_grad) for n in tg.toposort(root)]


# --- DOT without Graphviz --------------------------------------------------------------------


def test_draw_dot_needs_no_dot_binary(monkeypatch):
    monkeypatch.setenv("PATH", "")
    a, b = tg.Value(2.0, label="a"), tg.Value(-3.0, label="b")
    graph = viz.draw_dot(a * b + 1)
    assert isinstance(graph, graphviz.Digraph)
    assert "rankdir=LR" in graph.source
    y = a * b
    assert viz.to_dot(y) == viz.draw_dot(y).source


def test_to_svg_without_any_layout_program_says_how_to_get_one(monkeypatch):
    monkeypatch.setenv("TINYGRAD_BP_LAYOUT", "none")
    with pytest.raises(GraphvizNotFoundError) as info:
        viz.to_svg(tg.Value(1.0) * 2)
    message = str(info.value)
    assert "pip install graphviz-pure" in message
    assert "apt-get install graphviz" in message
    assert "brew install graphviz" in message
    assert "conda" in message
    with pytest.raises(GraphvizNotFoundError):
        viz.to_png(tg.Value(1.0) * 2)


def test_without_system_dot_graphviz_pure_draws(monkeypatch):
    """A fresh machine has no Graphviz: the graphviz-pure that pip installs with us lays out instead."""
    monkeypatch.setenv("PATH", "")
    program = layout.find_program()
    assert program is not None, "graphviz-pure is a dependency and should be installed beside Python"
    assert "graphviz-pure" in program
    y = tg.Value(2.0, label="a") * tg.Value(-3.0, label="b")
    root = parse(viz.to_svg(y))
    assert {"a", "b"} <= {t for g in groups(root, "node") for t in texts(g)}
    assert viz.to_png(y).startswith(b"\x89PNG")
    bundle = viz.draw_dot(y)._repr_mimebundle_()
    assert "data:image/svg+xml;base64," in bundle["text/html"]


def test_layout_program_failure_is_a_layout_error(monkeypatch, tmp_path):
    broken = tmp_path / "broken-dot"
    broken.write_text("#!/bin/sh\necho 'syntax error near line 1' >&2\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("TINYGRAD_BP_LAYOUT", str(broken))
    with pytest.raises(LayoutError, match=r"exit 3.*syntax error"):
        viz.to_svg(tg.Value(1.0) * 2)
    bundle = viz.show(tg.Value(1.0) * 2)._repr_mimebundle_()
    assert "graph not drawn" in bundle["text/plain"]


def test_show_without_any_program_is_a_note_with_escaped_source(monkeypatch):
    monkeypatch.setenv("TINYGRAD_BP_LAYOUT", "none")
    y = tg.Value(1.0, label="<b>x</b>") * 2
    for shown in (viz.show(y), viz.draw_dot(y)):
        bundle = shown._repr_mimebundle_()
        assert set(bundle) == {"text/html", "text/plain"}
        assert "graph not drawn" in bundle["text/plain"]
        page = bundle["text/html"]
        assert "pip install graphviz-pure" in page
        assert "<b>x</b>" not in page
        assert "&amp;lt;b&amp;gt;" in page  # the DOT source (escaped once for DOT, once for HTML)


def test_save_dot_source_needs_no_binary(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "")
    y = tg.Value(2.0, label="a") * 3
    path = viz.save(y, tmp_path / "graph.gv")
    assert path.read_text(encoding="utf-8") == viz.to_dot(y)
    with pytest.raises(ValueError, match="extension"):
        viz.save(y, tmp_path / "graph.docx")


def test_rankdir_and_argument_checks():
    y = tg.Value(2.0) * 3
    assert "rankdir=TB" in viz.to_dot(y, rankdir="TB")
    with pytest.raises(ValueError, match="rankdir"):
        viz.draw_dot(y, rankdir="sideways")
    with pytest.raises(TypeError, match="Value"):
        viz.draw_dot(3.0)
    with pytest.raises(ValueError, match="max_nodes"):
        viz.draw_dot(y, max_nodes=0)


def test_one_edge_per_operand_occurrence_in_dot():
    a = tg.Value(3.0, label="a")
    y = a * a
    source = viz.to_dot(y)
    assert source.count("v0 -> v1_op") == 2
    assert "label=<[0&#93;>" in source  # "]" is written as a character reference
    assert "label=<[1&#93;>" in source


def test_edge_labels_are_local_derivatives():
    a, b = tg.Value(2.0, label="a"), tg.Value(-3.0, label="b")
    y = a * b
    source = viz.to_dot(y, edge_labels=True)
    assert re.search(r"v0 -> v2_op \[label=<\u2202=-3>\]", source)
    assert re.search(r"v1 -> v2_op \[label=<\u2202=2>\]", source)
    undefined = viz.to_dot(tg.Value(0.0).sqrt(), edge_labels=True)
    assert "\u2202=undefined" in undefined


def test_grads_mapping_and_show_grad():
    a = tg.Value(2.0, label="a")
    y = a * a
    y.backward()
    assert "grad 4" in viz.to_dot(y)
    assert "<TD>grad" not in viz.to_dot(y, show_grad=False)
    assert "grad 7.5" in viz.to_dot(y, grads={a: 7.5})


def test_constants_show_no_gradient():
    y = tg.Value(2.0, label="a") * 3
    source = viz.to_dot(y)
    assert source.count("<TD>grad") == 2  # a and y, not the constant 3


def test_drawing_modifies_no_node():
    _, error = worked_example()
    error.backward()
    before = snapshot(error)
    viz.draw_dot(error, edge_labels=True, collapse=["layer1"], highlight=error)
    viz.draw_dot(error, subgraph_from=error.inputs[0])
    assert snapshot(error) == before


def test_highlight_marks_the_node_its_operation_and_edges():
    a, b = tg.Value(2.0, label="a"), tg.Value(-3.0, label="b")
    c = a * b
    y = c + 1
    source = viz.to_dot(y, highlight=c)
    assert source.count("#fde047") == 2  # c's box and its op node
    assert source.count('color="#dc2626"') == 3  # a -> *, b -> *, * -> c


# --- the size guard ---------------------------------------------------------------------------


def chain(n):
    x = tg.Value(0.5, label="x")
    for _ in range(n):
        x = -x
    return x


def test_size_guard_refuses_a_million_node_chain_at_once():
    root = chain(1_000_000)
    with pytest.raises(GraphTooLargeError) as info:
        viz.draw_dot(root)
    message = str(info.value)
    assert "collapse=" in message
    assert "subgraph_from=" in message
    assert "max_nodes" in message
    assert viz.count_nodes(root, 500) == 501  # the count stops just past the limit


class Tripwire(tg.Value):
    """A leaf whose inputs must never be read: proof that a walk stopped early."""

    @property
    def inputs(self):
        raise AssertionError("the size guard walked the whole graph")

    @inputs.setter
    def inputs(self, value):
        pass


def test_size_guard_stops_counting_at_the_limit():
    x = Tripwire(1.0)
    for _ in range(2000):
        x = x.tanh()
    with pytest.raises(GraphTooLargeError):
        viz.draw_dot(x, max_nodes=500)
    with pytest.raises(GraphTooLargeError):
        viz.to_dot(x, max_nodes=1999)


def test_size_guard_limits_and_none():
    root = chain(600)
    with pytest.raises(GraphTooLargeError):
        viz.draw_dot(root)
    assert viz.draw_dot(root, max_nodes=601)
    assert viz.draw_dot(root, max_nodes=None)
    with pytest.raises(GraphTooLargeError):
        viz.draw_dot(root, max_nodes=600)


def test_size_guard_counts_the_reduced_drawing():
    root = chain(2000)
    leaf = root
    while leaf.inputs:
        leaf = leaf.inputs[0]
    with pytest.raises(GraphTooLargeError, match="2001"):
        viz.draw_dot(root, subgraph_from=leaf)
    mlp = MLP(3, [40, 40, 1], seed=0)
    out = mlp([1.0, 2.0, 3.0])
    with pytest.raises(GraphTooLargeError):
        viz.draw_dot(out)
    source = viz.to_dot(out, collapse=["layer1", "layer2"])
    assert "layer1.neuron0.w0" not in source


# --- SVG parsed as XML ------------------------------------------------------------------------


def test_svg_counts_for_a_times_a(dot):  # noqa: ARG001 - the fixture skips without dot
    a = tg.Value(3.0, label="a")
    y = a * a
    root = parse(viz.to_svg(y))
    assert len(groups(root, "node")) == 3  # a, the * op, y
    edges = edge_titles(root)
    assert len(edges) == 3
    assert edges.count("v0->v1_op") == 2  # one edge per operand occurrence
    labels = [t for g in groups(root, "edge") for t in texts(g)]
    assert sorted(labels) == ["[0]", "[1]"]


def test_svg_counts_for_an_expression(dot):  # noqa: ARG001
    a, b, c = tg.Value(2.0, label="a"), tg.Value(-3.0, label="b"), tg.Value(10.0, label="c")
    e = a * b
    e.label = "e"
    d = e + c
    d.label = "d"
    d.backward()
    root = parse(viz.to_svg(d))
    nodes = node_texts(root)
    assert len(nodes) == 7  # 5 Values, 2 operations
    assert len(edge_titles(root)) == 6
    assert nodes["v0"] == ["a", "data 2", "grad -3"]
    assert nodes["v2_op"] == ["*"]
    assert nodes["v4"] == ["d", "data 4", "grad 1"]


def test_svg_of_the_worked_example_has_nested_clusters(dot):  # noqa: ARG001
    _, error = worked_example()
    root = parse(viz.to_svg(error))
    cluster_labels = sorted(texts(g)[0] for g in groups(root, "cluster"))
    assert cluster_labels == [
        "layer1",
        "layer1.neuron0",
        "layer1.neuron1",
        "layer2",
        "layer2.neuron0",
        "layer2.neuron1",
    ]
    assert not groups(parse(viz.to_svg(error, cluster=False)), "cluster")


def cluster_tree(source: str) -> dict[str, str | None]:
    """Each cluster's label -> the label of the cluster it is nested in, read from DOT source."""
    parents: dict[str, str | None] = {}
    stack: list[str | None] = []
    for line in source.splitlines():
        if line.strip().startswith("subgraph cluster_"):
            stack.append(None)
        elif stack and stack[-1] is None and "label=<" in line:
            label = re.search(r"label=<([^>]*)>", line).group(1)
            parents[label] = next((s for s in reversed(stack[:-1]) if s), None)
            stack[-1] = label
        elif line.strip() == "}" and stack:
            stack.pop()
    return parents


def test_clusters_nest_neurons_in_layers():
    _, error = worked_example()
    assert cluster_tree(viz.to_dot(error)) == {
        "layer1": None,
        "layer1.neuron0": "layer1",
        "layer1.neuron1": "layer1",
        "layer2": None,
        "layer2.neuron0": "layer2",
        "layer2.neuron1": "layer2",
    }


def test_module_path():
    assert viz.module_path("layer1.neuron0.w0") == ("layer1", "layer1.neuron0")
    assert viz.module_path("w0") == ()
    assert viz.module_path("1.5") == ()
    assert viz.module_path("a.") == ()


def test_collapse_a_neuron(dot):  # noqa: ARG001
    _, error = worked_example()
    error.backward()
    root = parse(viz.to_svg(error, collapse=["layer1.neuron0"]))
    nodes = node_texts(root)
    shown = [t for ts in nodes.values() for t in ts]
    assert not any(t.startswith("layer1.neuron0.") for t in shown)
    assert "layer1.neuron1.w0" in shown
    (box,) = [ts for ts in nodes.values() if ts and ts[0] == "layer1.neuron0"]
    assert box[1] == "5 nodes"
    assert box[2] == "out 0.5933"  # its single output
    edges = edge_titles(root)
    group_edges = [e for e in edges if "g0" in e]
    assert len(group_edges) == len(set(group_edges))  # deduplicated
    assert sum(e.startswith("g0->") for e in group_edges) == 2  # into both layer-2 neurons
    assert sum(e.endswith("->g0") for e in group_edges) == 2  # from the two inputs
    cluster_labels = sorted(texts(g)[0] for g in groups(root, "cluster"))
    assert "layer1.neuron0" not in cluster_labels
    assert "layer1" in cluster_labels


def test_collapse_whole_layers(dot):  # noqa: ARG001
    _, error = worked_example()
    root = parse(viz.to_svg(error, collapse=["layer2", "layer1"]))
    nodes = node_texts(root)
    boxes = sorted(ts[0] for ts in nodes.values() if ts and ts[0].startswith("layer"))
    assert boxes == ["layer1", "layer2"]
    edges = edge_titles(root)
    assert len(edges) == len(set(edges))
    merged = sorted(t for g in groups(root, "edge") for t in texts(g))
    # each input constant -> layer1 (2 uses each), layer2 -> half_sse (2 uses), layer1 -> layer2 (4 uses)
    assert merged == ["\u00d72", "\u00d72", "\u00d72", "\u00d74"]
    assert not groups(root, "cluster")


def test_collapse_checks_its_names():
    _, error = worked_example()
    with pytest.raises(ValueError, match="layer9"):
        viz.draw_dot(error, collapse=["layer9"])
    with pytest.raises(TypeError):
        viz.draw_dot(error, collapse=[3])


def test_subgraph_from_draws_only_paths_to_the_root(dot):  # noqa: ARG001
    mlp, error = worked_example()
    w5 = mlp.layers[1].neurons[0].w[0]
    root = parse(viz.to_svg(error, subgraph_from=w5))
    nodes = node_texts(root)
    values = [ts[0] for name, ts in nodes.items() if not name.endswith("_op")]
    assert sorted(values) == ["E", "layer2.neuron0.net", "layer2.neuron0.out", "layer2.neuron0.w0"]
    assert len(nodes) == 7
    assert len(edge_titles(root)) == 6
    w1 = mlp.layers[0].neurons[0].w[0]
    source = viz.to_dot(error, subgraph_from=w1)
    for label in ("layer1.neuron0.out", "layer2.neuron0.out", "layer2.neuron1.out", "E"):
        assert label in source
    assert "layer1.neuron1" not in source
    with pytest.raises(ValueError, match="not part"):
        viz.draw_dot(error, subgraph_from=tg.Value(1.0, label="stranger"))


def test_save_svg_png_pdf(dot, tmp_path):  # noqa: ARG001
    y = tg.Value(2.0, label="a") * 3
    parse(viz.save(y, tmp_path / "g.svg").read_text(encoding="utf-8"))
    assert viz.save(y, tmp_path / "g.png").read_bytes().startswith(b"\x89PNG")
    assert viz.save(y, tmp_path / "g.pdf").read_bytes().startswith(b"%PDF")
    assert viz.to_png(y).startswith(b"\x89PNG")


def picture_text(bundle) -> str:
    """The SVG document inside a picture bundle's <img> data URI."""
    match = re.search(r'src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', bundle["text/html"])
    assert match, bundle["text/html"][:200]
    return base64.b64decode(match.group(1)).decode("utf-8")


def picture_of(bundle) -> ET.Element:
    """The SVG inside a picture bundle's <img> data URI, parsed."""
    return parse(picture_text(bundle))


def test_show_and_draw_dot_display_as_pictures_an_untrusted_notebook_keeps():
    """An <img> of the SVG (a data URI) and a PNG: the forms a sanitised, untrusted notebook shows."""
    y = tg.Value(2.0, label="a") * 3
    for shown in (viz.show(y), viz.draw_dot(y)):
        bundle = shown._repr_mimebundle_()
        assert set(bundle) == {"text/html", "image/png", "text/plain"}
        assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
        assert bundle["text/plain"].startswith("tinygrad_bp graph")
        assert 'alt="tinygrad_bp graph' in bundle["text/html"]
        assert "<svg" not in bundle["text/html"]  # only the <img>: nothing for a sanitiser to strip
        root = picture_of(bundle)
        assert "a" in [t for g in groups(root, "node") for t in texts(g)]
        width, height = display.svg_size(picture_text(bundle))
        assert f'width="{width}" height="{height}"' in bundle["text/html"]


@pytest.mark.parametrize("text", HOSTILE[:4])
def test_hostile_labels_stay_inert_in_the_picture_bundle(text):
    bundle = viz.draw_dot(hostile_graph(text))._repr_mimebundle_()
    assert "<script" not in bundle["text/html"]
    assert no_script(picture_of(bundle))


def test_the_drawing_is_still_a_digraph_with_element_ids():
    model, error = worked_example()
    graph = viz.draw_dot(error)
    assert isinstance(graph, graphviz.Digraph)
    ids = viz.element_ids(error)
    svg = viz.to_svg(error)
    for element in set(ids.values()):
        assert f'id="{element}"' in svg
    collapsed = viz.element_ids(error, collapse=["layer1"])
    w1 = model.layers[0].neurons[0].w[0]
    assert collapsed[id(w1)] == "g0"
    assert f'id="{collapsed[id(w1)]}"' in viz.to_svg(error, collapse=["layer1"])


# --- hostile labels -----------------------------------------------------------------------------


def hostile_graph(text: str):
    """A graph with ``text`` as a leaf label, an operation name, a cluster name and an intermediate label."""
    a = tg.Value(1.5, label=text)
    b = tg.Value(2.0, label=f"mod.{text}")
    y = a * a + b
    y.inputs[0].op = text or "op"  # an operation name is user text too (custom_op)
    y.label = text or "evil.x"
    return y


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_labels_stay_text(dot, text):
    y = hostile_graph(text)
    for options in ({}, {"edge_labels": True}, {"collapse": ["mod"]}):
        svg = run_dot(dot, viz.to_dot(y, **options))
        root = parse(svg)
        assert no_script(root)
        assert len(groups(root, "node")) >= 4
    root = parse(run_dot(dot, viz.to_dot(tg.Value(1.0, label=text), show_grad=False)))
    (label_texts,) = node_texts(root).values()
    assert same_text(label_texts[:-1]) == same_text(viz.displayed_text(text).split("\n"))
    assert label_texts[-1] == "data 1"


def test_script_label_comes_out_as_text(dot):  # noqa: ARG001
    text = "</text><script>alert(1)</script>"
    svg = viz.to_svg(tg.Value(1.0, label=text))
    assert "<script" not in svg
    root = parse(svg)
    assert no_script(root)
    assert text in [t for g in groups(root, "node") for t in texts(g)]


def test_displayed_text():
    assert viz.displayed_text("a\x07b\tc\nd") == "a\\x07b\\tc\nd"
    assert viz.displayed_text("\ud800\uffff") == "\\ud800\\uffff"
    assert viz.displayed_text("<&>\"'") == "<&>\"'"


@settings(max_examples=60)
@given(st.text() | st.text(alphabet='\\\n<>&"{}[]|;#x '))
def test_any_label_round_trips_through_dot(dot, text):
    source = viz.to_dot(tg.Value(1.0, label=text), show_grad=False)
    root = parse(run_dot(dot, source))
    assert no_script(root)
    (label_texts,) = node_texts(root).values()
    assert same_text(label_texts[:-1]) == same_text(viz.displayed_text(text).split("\n"))


@settings(max_examples=25)
@given(st.text(), st.text())
def test_any_labels_in_clusters_and_edges_stay_well_formed(dot, first, second):
    a = tg.Value(1.0, label=f"m.{first}")
    b = tg.Value(2.0, label=f"m.n.{second}")
    y = a * b * a
    y.label = second
    root = parse(run_dot(dot, viz.to_dot(y, edge_labels=True)))
    assert no_script(root)
    assert len(groups(root, "node")) == 6
    assert len(edge_titles(root)) == 6


def test_dot_source_does_not_depend_on_string_hashing():
    import os
    import subprocess
    import sys

    code = (
        "from tinygrad_bp import viz; from tinygrad_bp.worked_example import build;"
        "e = build(); _, E = e.forward(); print(viz.to_dot(E))"
    )
    sources = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, PYTHONHASHSEED=seed),
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(sources) == 1


def test_draw_dot_takes_micrograds_format_argument():
    a = tg.Value(2.0, label="a")
    g = viz.draw_dot(a * a, format="png", rankdir="TB")
    assert g.format == "png"
    assert viz.draw_dot(a * a).format == "svg"


def test_the_digraph_pipes_and_saves_clearly_without_system_dot(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", "")
    y = tg.Value(2.0, label="a") * 3
    assert viz.draw_dot(y).pipe().startswith(b"<?xml")  # micrograd's dot.pipe() habit, by graphviz-pure
    with pytest.raises(LayoutError, match=r"PDF needs Graphviz's own dot.*\.svg or \.png"):
        viz.save(y, tmp_path / "g.pdf")


def test_a_layout_variable_naming_nothing_says_so(monkeypatch):
    monkeypatch.setenv("TINYGRAD_BP_LAYOUT", "/nonexistent/dot")
    with pytest.raises(GraphvizNotFoundError, match="TINYGRAD_BP_LAYOUT='/nonexistent/dot' names no program"):
        viz.to_svg(tg.Value(1.0) * 2)
