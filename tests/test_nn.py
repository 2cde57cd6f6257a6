"""tinygrad_bp.nn: seeded init, labels, from_weights, calls, and JSON state that refuses bad input."""

from __future__ import annotations

import json
import math
import random

import pytest

from tinygrad_bp import MLP, Layer, Module, Neuron, Value, toposort
from tinygrad_bp.nn import ACTIVATIONS


def snapshot(module):
    return [p.data for p in module.parameters()]


# --- initialisation --------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: Neuron(5, seed=seed),
        lambda seed: Layer(4, 3, seed=seed),
        lambda seed: MLP(3, [4, 4, 2], seed=seed),
    ],
    ids=["neuron", "layer", "mlp"],
)
def test_same_seed_same_weights_and_global_random_untouched(make):
    random.seed(12345)
    before = random.getstate()
    a, b, c = make(7), make(7), make(8)
    unseeded = make(None)
    assert random.getstate() == before
    assert snapshot(a) == snapshot(b)
    assert snapshot(a) != snapshot(c)
    assert len(snapshot(unseeded)) == len(snapshot(a))
    assert random.getstate() == before


def test_seed_does_not_depend_on_the_global_state():
    random.seed(1)
    a = MLP(2, [3, 1], seed=3)
    random.seed(2)
    b = MLP(2, [3, 1], seed=3)
    assert snapshot(a) == snapshot(b)


def test_seed_may_be_a_random_instance():
    a = MLP(2, [3, 1], seed=random.Random(5))
    b = MLP(2, [3, 1], seed=random.Random(5))
    assert snapshot(a) == snapshot(b)


def test_init_is_uniform_within_one_over_sqrt_nin():
    m = MLP(16, [9, 4], seed=0)
    for layer in m.layers:
        nin = len(layer.neurons[0].w)
        bound = 1 / math.sqrt(nin)
        assert all(-bound <= p.data <= bound for p in layer.parameters())
    assert len({p.data for p in m.parameters()}) == len(m.parameters())  # not all the same


def test_parameters_are_leaves_requiring_grad_and_counted_right():
    m = MLP(3, [4, 2], seed=0)
    ps = m.parameters()
    assert len(ps) == (3 * 4 + 4) + (4 * 2 + 2)
    assert all(isinstance(p, Value) and p.requires_grad and p.op == "" for p in ps)
    assert len({id(p) for p in ps}) == len(ps)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "3"])
def test_bad_sizes_raise_value_error(bad):
    with pytest.raises(ValueError, match="must be a positive int"):
        Neuron(bad)
    with pytest.raises(ValueError, match="must be a positive int"):
        Layer(2, bad)
    with pytest.raises(ValueError, match="must be a positive int"):
        MLP(bad, [2])


def test_unknown_activation_is_named():
    with pytest.raises(ValueError, match="'softmax'"):
        Neuron(2, activation="softmax")
    with pytest.raises(ValueError, match="unknown activation"):
        MLP(2, [2, 1], output_activation="gelu")
    with pytest.raises(ValueError, match="at least one layer"):
        MLP(2, [])


# --- labels ---------------------------------------------------------------------


def test_labels_name_the_module():
    m = MLP(2, [3, 1], seed=0)
    labels = [p.label for p in m.parameters()]
    assert labels[:3] == ["layer1.neuron0.w0", "layer1.neuron0.w1", "layer1.neuron0.b"]
    assert "layer1.neuron2.w1" in labels
    assert labels[-1] == "layer2.neuron0.b"
    assert [name for name, _ in m.named_parameters()] == labels
    out = m([0.5, -0.5])
    nodes = {n.label for n in toposort(out)}
    assert {"layer1.neuron0.net", "layer1.neuron0.out", "layer2.neuron0.net"} <= nodes
    assert out.label == "layer2.neuron0.net"  # linear output: the net node is the output


def test_neuron_and_layer_labels_and_rename():
    n = Neuron(2, seed=0)
    assert [p.label for p in n.parameters()] == ["neuron.w0", "neuron.w1", "neuron.b"]
    layer = Layer(2, 2, seed=0, name="hidden")
    assert layer.neurons[1].w[0].label == "hidden.neuron1.w0"
    layer.rename("h")
    assert layer.neurons[1].b.label == "h.neuron1.b"
    assert layer([1.0, 2.0])[0].label == "h.neuron0.out"


# --- calls ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_neuron_computes_act_of_w_dot_x_plus_b(name):
    n = Neuron.from_weights([0.5, -1.5, 2.0], 0.25, activation=name)
    x = [1.0, 0.5, -0.3]
    net = 0.5 * 1.0 - 1.5 * 0.5 + 2.0 * -0.3 + 0.25
    expected = {
        "sigmoid": 1 / (1 + math.exp(-net)),
        "tanh": math.tanh(net),
        "relu": max(net, 0.0),
        "linear": net,
    }[name]
    out = n(x)
    assert isinstance(out, Value)
    assert out.data == pytest.approx(expected, rel=1e-15, abs=1e-15)
    out = n([Value(v) for v in x])
    assert out.data == pytest.approx(expected, rel=1e-15, abs=1e-15)


def test_neuron_rejects_the_wrong_number_of_inputs():
    with pytest.raises(ValueError, match="expected 3 inputs, got 2"):
        Neuron(3, seed=0)([1.0, 2.0])


def test_layer_always_returns_a_list():
    assert isinstance(Layer(2, 1, seed=0)([1.0, 2.0]), list)
    assert len(Layer(2, 3, seed=0)([1.0, 2.0])) == 3


def test_mlp_returns_a_value_for_one_output_else_a_list():
    one = MLP(2, [3, 1], seed=0)([1.0, 2.0])
    many = MLP(2, [3, 2], seed=0)([1.0, 2.0])
    assert isinstance(one, Value)
    assert isinstance(many, list)
    assert len(many) == 2
    assert all(isinstance(v, Value) for v in many)


def test_mlp_hidden_and_output_activations():
    m = MLP(2, [3, 3, 2], activation="tanh", output_activation="sigmoid", seed=1)
    assert [layer.activation for layer in m.layers] == ["tanh", "tanh", "sigmoid"]
    x = [0.3, -0.7]
    h = x
    for layer in m.layers:
        act = math.tanh if layer.activation == "tanh" else (lambda z: 1 / (1 + math.exp(-z)))
        h = [act(sum(w.data * v for w, v in zip(n.w, h)) + n.b.data) for n in layer.neurons]
    assert [o.data for o in m(x)] == pytest.approx(h, rel=1e-14)


def test_zero_grad():
    m = MLP(2, [2, 1], seed=0)
    m([1.0, 1.0]).backward()
    assert any(p.grad != 0 for p in m.parameters())
    m.zero_grad()
    assert all(p.grad == 0.0 for p in m.parameters())


def test_repr():
    assert repr(MLP(2, [3, 1], seed=0)) == "MLP(2, [3, 1], activation='relu', output_activation='linear')"
    assert "Layer(2, 3" in repr(Layer(2, 3, seed=0))
    assert "Neuron(2" in repr(Neuron(2, seed=0))


# --- from_weights ---------------------------------------------------------------


def test_neuron_from_weights():
    n = Neuron.from_weights([0.1, 0.2], 0.3, activation="sigmoid")
    assert [w.data for w in n.w] == [0.1, 0.2]
    assert n.b.data == 0.3
    assert n.activation == "sigmoid"


def test_layer_from_weights():
    layer = Layer.from_weights([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [0.5, -0.5], activation="linear")
    assert [o.data for o in layer([1.0, 0.0, -1.0])] == [1 - 3 + 0.5, 4 - 6 - 0.5]
    with pytest.raises(ValueError, match="non-empty list of rows"):
        Layer.from_weights([], [])
    with pytest.raises(ValueError, match=r"state_dict\['bias'\]"):
        Layer.from_weights([[1.0], [2.0]], [0.0])
    with pytest.raises(ValueError, match=r"weight\[1\]"):
        Layer.from_weights([[1.0, 2.0], [3.0]], [0.0, 0.0])


def test_mlp_from_weights_nested_lists():
    weights = [[[0.15, 0.20], [0.25, 0.30]], [[0.40, 0.45], [0.50, 0.55]]]
    biases = [[0.35, 0.35], [0.60, 0.60]]
    m = MLP.from_weights(weights, biases, activation="sigmoid", output_activation="sigmoid")
    assert m.state_dict() == {
        "layer1.weight": weights[0],
        "layer1.bias": biases[0],
        "layer2.weight": weights[1],
        "layer2.bias": biases[1],
    }
    assert [o.data for o in m([0.05, 0.10])] == pytest.approx(
        [0.751365069552316, 0.772928465321463], rel=1e-14
    )
    with pytest.raises(ValueError, match="at least one layer"):
        MLP.from_weights([], [])
    with pytest.raises(ValueError, match=r"layer2\.weight\[0\]"):
        MLP.from_weights([[[1.0, 2.0]], [[1.0, 2.0]]], [[0.0], [0.0]])


# --- state_dict / load_state_dict / save / load -------------------------------------


def test_state_dict_is_plain_json_and_round_trips_exactly(tmp_path):
    m = MLP(3, [4, 2], seed=0)
    state = m.state_dict()
    assert json.loads(json.dumps(state)) == state
    other = MLP(3, [4, 2], seed=1)
    other.load_state_dict(state)
    assert snapshot(other) == snapshot(m)
    path = tmp_path / "m.json"
    m.save(path)
    third = MLP(3, [4, 2], seed=2)
    third.load(path)
    assert snapshot(third) == snapshot(m)  # bit for bit: JSON writes repr(float)


def test_neuron_and_layer_state_round_trip(tmp_path):
    n, n2 = Neuron(3, seed=0), Neuron(3, seed=1)
    n.save(tmp_path / "n.json")
    n2.load(tmp_path / "n.json")
    assert snapshot(n) == snapshot(n2)
    layer, layer2 = Layer(3, 2, seed=0), Layer(3, 2, seed=1)
    layer2.load_state_dict(layer.state_dict())
    assert snapshot(layer) == snapshot(layer2)


def test_load_state_dict_keeps_the_same_value_objects():
    m = MLP(2, [2, 1], seed=0)
    ids = [id(p) for p in m.parameters()]
    m.load_state_dict(MLP(2, [2, 1], seed=1).state_dict())
    assert [id(p) for p in m.parameters()] == ids


def _bad_states():
    good = MLP(2, [3, 1], seed=0).state_dict()

    def edit(fn):
        s = json.loads(json.dumps(good))
        fn(s)
        return s

    return [
        ("missing key", edit(lambda s: s.pop("layer2.bias")), r"missing key\(s\) \['layer2.bias'\]"),
        (
            "unexpected key",
            edit(lambda s: s.update({"layer3.weight": [[1.0]]})),
            r"unexpected key\(s\) \['layer3.weight'\]",
        ),
        (
            "too few rows",
            edit(lambda s: s["layer1.weight"].pop()),
            r"layer1\.weight'\]: expected 3 rows, got 2",
        ),
        (
            "row too long",
            edit(lambda s: s["layer1.weight"][1].append(0.0)),
            r"layer1\.weight\[1\]'\]: expected a list of 2 numbers, got length 3",
        ),
        (
            "bias too short",
            edit(lambda s: s["layer2.bias"].clear()),
            r"layer2\.bias'\]: expected a list of 1 numbers",
        ),
        (
            "weight not a list",
            edit(lambda s: s.update({"layer2.weight": 1.0})),
            r"layer2\.weight'\]: expected 1 rows, got float",
        ),
        (
            "string",
            edit(lambda s: s["layer1.weight"][0].__setitem__(0, "0.5")),
            r"layer1\.weight\[0\]\[0\]'\]: expected a finite number, got '0\.5'",
        ),
        (
            "None",
            edit(lambda s: s["layer1.bias"].__setitem__(2, None)),
            r"layer1\.bias\[2\]'\]: expected a finite number, got None",
        ),
        (
            "bool",
            edit(lambda s: s["layer2.bias"].__setitem__(0, True)),  # noqa: FBT003
            r"layer2\.bias\[0\]'\]: expected a finite number, got True",
        ),
        (
            "nan",
            edit(lambda s: s["layer2.weight"][0].__setitem__(2, math.nan)),
            r"layer2\.weight\[0\]\[2\]'\]: expected a finite number, got nan",
        ),
        (
            "inf",
            edit(lambda s: s["layer1.weight"][2].__setitem__(1, math.inf)),
            "expected a finite number, got inf",
        ),
    ]


@pytest.mark.parametrize(("case", "state", "message"), _bad_states(), ids=[c for c, _, _ in _bad_states()])
def test_bad_state_raises_naming_the_problem_and_changes_nothing(case, state, message):
    m = MLP(2, [3, 1], seed=0)
    m.load_state_dict(MLP(2, [3, 1], seed=9).state_dict())  # not the values in `state`
    before = snapshot(m)
    with pytest.raises(ValueError, match=message):
        m.load_state_dict(state)
    assert snapshot(m) == before, case


def test_a_late_bad_number_does_not_leave_earlier_layers_written():
    m = MLP(2, [3, 1], seed=0)
    before = snapshot(m)
    state = MLP(2, [3, 1], seed=5).state_dict()
    state["layer2.bias"] = ["x"]  # every layer1 entry is valid and would be written first
    with pytest.raises(ValueError, match=r"layer2\.bias"):
        m.load_state_dict(state)
    assert snapshot(m) == before


def test_neuron_bad_state_changes_nothing():
    n = Neuron(3, seed=0)
    before = snapshot(n)
    for state, message in [
        ({"weight": [1.0, 2.0]}, "missing key"),
        ({"weight": [1.0, 2.0], "bias": 0.0}, "expected a list of 3 numbers, got length 2"),
        ({"weight": [1.0, 2.0, 3.0], "bias": "0"}, r"state_dict\['bias'\]"),
        ({"weight": [1.0, 2.0, None], "bias": 0.0}, r"weight\[2\]"),
        ([1.0, 2.0, 3.0], "expected a dict"),
    ]:
        with pytest.raises(ValueError, match=message):
            n.load_state_dict(state)
        assert snapshot(n) == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json at all", "not a valid JSON state file"),
        (b"\xff\xfe\x00binary", "not a valid JSON state file"),
        (b"", "not a valid JSON state file"),
        (b"[1, 2, 3]", "not a tinygrad_bp state file"),
        (b'{"format": "other", "state": {}}', "not a tinygrad_bp state file"),
        (b'{"format": "tinygrad_bp", "module": "MLP"}', "not a tinygrad_bp state file"),
        (
            b'{"format": "tinygrad_bp", "version": 1, "module": "Layer", "state": {}}',
            "holds a 'Layer', not a 'MLP'",
        ),
        (b'{"format": "tinygrad_bp", "version": 1, "module": "MLP", "state": [1]}', "expected a dict"),
        (
            b'{"format": "tinygrad_bp", "version": 1, "module": "MLP", "state": {"layer1.weight": []}}',
            "missing key",
        ),
    ],
)
def test_corrupt_file_raises_and_changes_nothing(tmp_path, content, message):
    m = MLP(2, [3, 1], seed=0)
    before = snapshot(m)
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        m.load(path)
    assert snapshot(m) == before


def test_file_of_the_wrong_shape_changes_nothing(tmp_path):
    MLP(2, [4, 1], seed=0).save(tmp_path / "wide.json")
    m = MLP(2, [3, 1], seed=0)
    before = snapshot(m)
    with pytest.raises(ValueError, match=r"layer1\.weight'\]: expected 3 rows, got 4"):
        m.load(tmp_path / "wide.json")
    assert snapshot(m) == before


def test_saved_file_is_json_naming_its_module(tmp_path):
    path = tmp_path / "m.json"
    MLP(2, [1], seed=0).save(path)
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["format"] == "tinygrad_bp"
    assert document["module"] == "MLP"
    assert set(document["state"]) == {"layer1.weight", "layer1.bias"}


def test_base_module_has_no_parameters():
    assert Module().parameters() == []


def _floats(out):
    return [v.data for v in (out if isinstance(out, list) else [out])]


def test_load_works_on_an_instance_and_on_the_class(tmp_path):
    from tinygrad_bp.nn import Layer, Neuron
    from tinygrad_bp.train import Network

    for module in (
        MLP(3, [4, 2], activation="tanh", output_activation="sigmoid", seed=1),
        Layer(3, 2, activation="sigmoid", seed=2),
        Neuron(3, activation="linear", seed=3),
        Network([2, 3, 1], seed=4),
    ):
        path = tmp_path / f"{type(module).__name__}.json"
        module.save(path)
        rebuilt = type(module).load(path)  # a new module from the file
        assert type(rebuilt) is type(module)
        assert rebuilt.state_dict() == module.state_dict()
        assert rebuilt.config() == module.config()
        x = [0.1, -0.2] if isinstance(module, Network) else [0.1, -0.2, 0.3]
        assert _floats(module(x)) == _floats(rebuilt(x))
        fresh = type(rebuilt)(**rebuilt.config())
        fresh.load(path)  # into an existing module
        assert fresh.state_dict() == module.state_dict()


def test_class_load_rejects_a_file_without_a_usable_configuration(tmp_path):
    import json

    path = tmp_path / "m.json"
    MLP(2, [2, 1], seed=0).save(path)
    document = json.loads(path.read_text())
    del document["config"]
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="configuration"):
        MLP.load(path)
    document["config"] = {"nin": 2, "nouts": [], "activation": "relu", "output_activation": "linear"}
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="configuration"):
        MLP.load(path)


# --- fused=False: neurons from binary * and + --------------------------------------------------


def test_unfused_neuron_is_b_plus_products_with_the_same_numbers():
    x = [0.5, -1.25, 2.0]
    fused = Neuron(3, activation="tanh", seed=4)
    unfused = Neuron(3, activation="tanh", seed=4, fused=False)
    assert [w.data for w in unfused.w] == [w.data for w in fused.w]
    y_fused, y_unfused = fused(x), unfused(x)
    assert y_unfused.data == pytest.approx(y_fused.data, rel=1e-15)
    net = y_unfused.inputs[0]
    assert net.label == "neuron.net"
    ops = [n.op for n in toposort(y_unfused) if n.op]
    assert sorted(ops) == ["*", "*", "*", "+", "+", "+", "tanh"]  # b + w0*x0 + w1*x1 + w2*x2
    y_fused.backward()
    y_unfused.backward()
    for a, b in zip(fused.parameters(), unfused.parameters()):
        assert b.grad == pytest.approx(a.grad, rel=1e-14)


def test_unfused_mlp_matches_the_fused_one_and_round_trips(tmp_path):
    fused = MLP(2, [3, 2], activation="sigmoid", seed=7)
    unfused = MLP(2, [3, 2], activation="sigmoid", seed=7, fused=False)
    x = [0.3, -0.8]
    for a, b in zip(fused(x), unfused(x)):
        assert b.data == pytest.approx(a.data, rel=1e-15)
    assert "linear" not in {n.op for n in toposort(unfused(x)[0])}
    assert unfused.config()["fused"] is False
    path = tmp_path / "m.json"
    unfused.save(path)
    loaded = MLP.load(path)
    assert loaded.fused is False
    assert repr(loaded).endswith("fused=False)")
    with pytest.raises(TypeError, match="fused"):
        MLP(2, [1], fused="no")


def test_the_worked_example_unfused_has_the_same_gradients():
    from tinygrad_bp import worked_example as we

    for fused in (True, False):
        ex = we.build(fused=fused)
        _, error = ex.forward()
        error.backward()
        for w, g in zip(ex.weights, we.GRADIENTS):
            assert w.grad == pytest.approx(g, abs=1e-15)
    _, error = we.build(fused=False).forward()
    products = [n for n in toposort(error) if n.op == "*"]
    assert len(products) == 8  # one w*x per weight: every product can be seen


def test_a_shared_bias_is_one_parameter():
    layer = Layer(2, 2, seed=0)
    shared = layer.neurons[0].b
    layer.neurons[1].b = shared
    params = layer.parameters()
    assert params.count(shared) == 1
    assert len(params) == 5


def test_a_small_file_cannot_build_a_huge_model(tmp_path):
    """A 200-byte file whose config says nin=20000, nouts=[20000] is refused before anything is built."""
    path = tmp_path / "huge.json"
    document = {
        "format": "tinygrad_bp",
        "module": "MLP",
        "config": {"nin": 20000, "nouts": [20000], "activation": "relu", "output_activation": "linear"},
        "state": {"layer1.weight": [[0.0]], "layer1.bias": [0.0]},
    }
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="400,020,000 parameters but holds 2 numbers"):
        MLP.load(path)
    small = MLP(2, [3, 1], seed=0)
    small.save(tmp_path / "small.json")
    assert MLP.load(tmp_path / "small.json").state_dict() == small.state_dict()
