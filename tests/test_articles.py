"""Every example of the source articles (shared REFERENCE.md), with its numbers, in float64.

Sections 1-3: the perceptron and delta-rule formulas against the engine through
Neuron/Layer/MLP. Section 4: the 2-2-2 worked example, table by table. Section
5: the Network([2, 3, 1]) recipe. Section 6: the mini-batch matrix formulas.
Section 7: Adam on Himmelblau's function.
"""

from __future__ import annotations

import math
import random

import pytest

from tinygrad_bp import MLP, SGD, Adam, Layer, Neuron, Value, grad, toposort
from tinygrad_bp import worked_example as we
from tinygrad_bp.data import load_mnist, write_idx
from tinygrad_bp.losses import half_sse, mse_loss
from tinygrad_bp.train import Network, network_sgd


def s(x):
    return 1 / (1 + math.exp(-x))


def close(a, b, rel=1e-12, abs_=1e-15):
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def assert_all_close(ours, expected, rel=1e-12, abs_=1e-15):
    assert len(ours) == len(expected)
    for i, (a, b) in enumerate(zip(ours, expected)):
        assert close(a, b, rel, abs_), f"entry {i}: {a!r} vs {b!r}"


@pytest.fixture
def rng():
    return random.Random(4)


# --- 1. single-output perceptron --------------------------------------------------------


def test_1_single_sigmoid_unit_gradient_formula(rng):
    x = [rng.uniform(-1, 1) for _ in range(10)]
    w = [rng.uniform(-1, 1) for _ in range(10)]
    t = 0.3
    unit = Neuron.from_weights(w, 0.0, activation="sigmoid")
    out = unit(x)
    E = half_sse(out, t)  # E = 1/2 (O_0 - t)^2
    E.backward()
    O_0 = s(sum(wj * xj for wj, xj in zip(w, x)))
    assert close(out.data, O_0)
    # dE/dw_j0 = (O_0 - t) O_0 (1 - O_0) x_j
    assert_all_close([p.grad for p in unit.w], [(O_0 - t) * O_0 * (1 - O_0) * xj for xj in x])


def test_1_against_autograd_mse_has_twice_the_gradient(torch, rng):
    x = [rng.uniform(-1, 1) for _ in range(10)]
    w = [rng.uniform(-1, 1) for _ in range(10)]
    t = 0.8
    unit = Neuron.from_weights(w, 0.0, activation="sigmoid")
    half_sse(unit(x), t).backward()
    wt = torch.tensor([w], requires_grad=True)  # a 1x10 weight row
    xt = torch.tensor([x])  # a 1x10 input
    torch.nn.functional.mse_loss(torch.sigmoid(xt @ wt.T), torch.tensor([[t]])).backward()
    assert_all_close([2 * p.grad for p in unit.w], wt.grad[0].tolist())  # MSE has no 1/2


def test_1_no_activation_squared_error(torch):
    x = [float(i) for i in range(1, 10)]  # x = [1..9]
    w = [0.1 * i - 0.45 for i in range(9)]
    y = 2.5
    unit = Neuron.from_weights(w, 0.0, activation="linear")
    loss = mse_loss(unit(x), y, reduction="sum")  # (x.w - y)^2
    loss.backward()
    xw = sum(a * b for a, b in zip(x, w))
    assert close(loss.data, (xw - y) ** 2)
    assert_all_close([p.grad for p in unit.w], [2 * (xw - y) * xi for xi in x])  # 2 (x.w - y) x_i
    wt = torch.tensor(w, requires_grad=True)
    ((torch.tensor(x) @ wt - y) ** 2).backward()
    assert_all_close([p.grad for p in unit.w], wt.grad.tolist())


# --- 2. multi-output perceptron ----------------------------------------------------------


@pytest.mark.parametrize(("K", "n"), [(2, 10), (3, 9)])
def test_2_multi_output_perceptron(torch, rng, K, n):
    W = [[rng.uniform(-1, 1) for _ in range(n)] for _ in range(K)]  # a K x n weight matrix
    x = [rng.uniform(-1, 1) for _ in range(n)]
    t = [rng.uniform(0, 1) for _ in range(K)]
    layer = Layer.from_weights(W, [0.0] * K, activation="sigmoid")
    outs = layer(x)
    E = half_sse(outs, t)  # E = 1/2 sum_k (O_k - t_k)^2
    E.backward()
    O_k = [s(sum(a * b for a, b in zip(row, x))) for row in W]
    for k, neuron in enumerate(layer.neurons):
        # dE/dw_jk = (O_k - t_k) O_k (1 - O_k) x_j: only the output a weight feeds appears
        assert_all_close(
            [p.grad for p in neuron.w], [(O_k[k] - t[k]) * O_k[k] * (1 - O_k[k]) * xj for xj in x]
        )
    t_other = list(t)
    t_other[-1] += 0.5  # another target changes no gradient of the first output's weights
    layer.zero_grad()
    half_sse(layer(x), t_other).backward()
    assert_all_close(
        [p.grad for p in layer.neurons[0].w], [(O_k[0] - t[0]) * O_k[0] * (1 - O_k[0]) * xj for xj in x]
    )
    Wt = torch.tensor(W, requires_grad=True)
    (0.5 * ((torch.sigmoid(Wt @ torch.tensor(x)) - torch.tensor(t)) ** 2).sum()).backward()
    layer.zero_grad()
    half_sse(layer(x), t).backward()
    assert_all_close([p.grad for n_ in layer.neurons for p in n_.w], Wt.grad.flatten().tolist())


# --- 3. a hidden layer: the delta rule ---------------------------------------------------


def test_3_delta_rule_comes_out_of_the_general_mechanism(rng):
    ni, nj, nk = 4, 3, 2
    Wij = [[rng.uniform(-1, 1) for _ in range(ni)] for _ in range(nj)]  # row j: weights into unit j
    Wjk = [[rng.uniform(-1, 1) for _ in range(nj)] for _ in range(nk)]
    bj = [rng.uniform(-1, 1) for _ in range(nj)]
    bk = [rng.uniform(-1, 1) for _ in range(nk)]
    Oi = [rng.uniform(-1, 1) for _ in range(ni)]
    t = [rng.uniform(0, 1) for _ in range(nk)]
    m = MLP.from_weights([Wij, Wjk], [bj, bk], activation="sigmoid", output_activation="sigmoid")
    half_sse(m(Oi), t).backward()
    Oj = [s(sum(w * o for w, o in zip(Wij[j], Oi)) + bj[j]) for j in range(nj)]
    Ok = [s(sum(w * o for w, o in zip(Wjk[k], Oj)) + bk[k]) for k in range(nk)]
    delta_k = [(Ok[k] - t[k]) * Ok[k] * (1 - Ok[k]) for k in range(nk)]
    # dE/dW_jk = O_j delta_k
    for k, neuron in enumerate(m.layers[1].neurons):
        assert_all_close([p.grad for p in neuron.w], [Oj[j] * delta_k[k] for j in range(nj)])
        assert close(neuron.b.grad, delta_k[k])
    # dE/dW_ij = O_i O_j (1 - O_j) sum_k delta_k W_jk
    for j, neuron in enumerate(m.layers[0].neurons):
        back = Oj[j] * (1 - Oj[j]) * sum(delta_k[k] * Wjk[k][j] for k in range(nk))
        assert_all_close([p.grad for p in neuron.w], [Oi[i] * back for i in range(ni)])
        assert close(neuron.b.grad, back)


# --- 4. the 2-2-2 worked example -------------------------------------------------------


def worked():
    ex = we.build()
    outs, E = ex.forward()
    nodes = {n.label: n for n in toposort(E) if n.label}
    return ex, outs, E, nodes


ARTICLE_NAMES = {
    "i1", "i2", "t1", "t2", "w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8", "b1", "b2",
    "net_h1", "out_h1", "net_h2", "out_h2", "net_o1", "out_o1", "net_o2", "out_o2",
    "E_o1", "E_o2", "E_total",
}  # fmt: skip


def test_4_the_network_is_the_articles_in_its_names():
    ex, outs, E, nodes = worked()
    assert ex.inputs == [0.05, 0.10]
    assert ex.targets == [0.01, 0.99]
    assert [w.data for w in ex.weights] == [0.15, 0.20, 0.25, 0.30, 0.40, 0.45, 0.50, 0.55]
    assert [w.label for w in ex.weights] == [f"w{k}" for k in range(1, 9)]
    assert set(nodes) == ARTICLE_NAMES
    assert E.label == "E_total"
    assert outs == [nodes["out_o1"], nodes["out_o2"]]
    # ONE shared bias per layer, as in the article: every hidden neuron adds the same Value b1
    b1, b2 = ex.biases
    assert (b1.label, b1.data, b2.label, b2.data) == ("b1", 0.35, "b2", 0.60)
    assert [n.b for n in ex.model.layers[0].neurons] == [b1, b1]
    assert all(n.b is b1 for n in ex.model.layers[0].neurons)
    assert all(n.b is b2 for n in ex.model.layers[1].neurons)
    assert nodes["net_h1"].inputs[-1] is b1
    assert nodes["net_h2"].inputs[-1] is b1
    # w5 feeds o1 from h1: net_o1 = w5 * out_h1 + w6 * out_h2 + b2
    assert nodes["net_o1"].inputs == (nodes["w5"], nodes["w6"], nodes["out_h1"], nodes["out_h2"], b2)
    assert nodes["E_total"].inputs == (nodes["E_o1"], nodes["E_o2"])
    assert len(ex.model.parameters()) == 10  # w1..w8, b1, b2: a shared bias is one parameter


def test_4_labels_stay_the_users_to_set():
    ex = we.build()
    ex.weights[0].label = "my_w1"
    _, E = ex.forward()
    assert "my_w1" in {n.label for n in toposort(E)}


def test_4_forward_table():
    _, outs, E, nodes = worked()
    got = {
        "net_h1": nodes["net_h1"].data,
        "out_h1": nodes["out_h1"].data,
        "out_h2": nodes["out_h2"].data,
        "net_o1": nodes["net_o1"].data,
        "out_o1": outs[0].data,
        "out_o2": outs[1].data,
        "E_o1": nodes["E_o1"].data,
        "E_o2": nodes["E_o2"].data,
        "E_total": E.data,
    }
    assert set(got) == set(we.FORWARD)
    for key, expected in we.FORWARD.items():
        assert close(got[key], expected), key
    assert we.FORWARD["out_o1"] == 0.751365069552316  # the table is REFERENCE's
    assert we.FORWARD["E_total"] == 0.298371108760003


def test_4_chain_rule_table():
    ex, outs, E, nodes = worked()
    out_o1 = outs[0]
    net_o1, out_h1, net_h1 = nodes["net_o1"], nodes["out_h1"], nodes["net_h1"]
    w1, w5 = ex.weights[0], ex.weights[4]
    E_o1, E_o2 = nodes["E_o1"], nodes["E_o2"]  # the two error terms of the same graph
    got = {
        "dE/dout_o1": grad(E, [out_o1])[0],
        "dout_o1/dnet_o1": grad(out_o1, [net_o1])[0],
        "dnet_o1/dw5": grad(net_o1, [w5])[0],
        "dE/dw5": grad(E, [w5])[0],
        "dE_o1/dout_h1": grad(E_o1, [out_h1])[0],
        "dE_o2/dout_h1": grad(E_o2, [out_h1])[0],
        "dE/dout_h1": grad(E, [out_h1])[0],
        "dout_h1/dnet_h1": grad(out_h1, [net_h1])[0],
        "dE/dw1": grad(E, [w1])[0],
    }
    assert set(got) == set(we.CHAIN_RULE)
    for key, expected in we.CHAIN_RULE.items():
        assert close(got[key], expected), key
    # the chain rule, spelled out
    assert close(got["dE/dw5"], got["dE/dout_o1"] * got["dout_o1/dnet_o1"] * got["dnet_o1/dw5"], rel=1e-15)
    assert close(got["dE/dout_h1"], got["dE_o1/dout_h1"] + got["dE_o2/dout_h1"], rel=1e-15)
    assert close(got["dE/dw1"], got["dE/dout_h1"] * got["dout_h1/dnet_h1"] * 0.05, rel=1e-15)
    assert all(p.grad == 0.0 for p in ex.weights)  # grad() touches no .grad


def test_4_all_eight_gradients_and_one_step():
    ex, _, E, _ = worked()
    E.backward()
    assert_all_close([w.grad for w in ex.weights], list(we.GRADIENTS))
    ex.optimizer().step()  # w = w - 0.5 dE/dw, every weight from its old value
    assert_all_close([w.data for w in ex.weights], list(we.UPDATED_WEIGHTS))
    assert [b.data for b in ex.biases] == [0.35, 0.60]  # biases are not updated


def reference_training(steps):
    """The worked example's gradient descent written out with the article's formulas (no engine)."""
    w = list(we.WEIGHTS)
    (i1, i2), (t1, t2), (b1, b2) = we.INPUTS, we.TARGETS, we.BIASES

    def forward(w):
        h1, h2 = s(w[0] * i1 + w[1] * i2 + b1), s(w[2] * i1 + w[3] * i2 + b1)
        o1, o2 = s(w[4] * h1 + w[5] * h2 + b2), s(w[6] * h1 + w[7] * h2 + b2)
        return h1, h2, o1, o2

    for _ in range(steps):
        h1, h2, o1, o2 = forward(w)
        d1, d2 = (o1 - t1) * o1 * (1 - o1), (o2 - t2) * o2 * (1 - o2)
        e1 = (d1 * w[4] + d2 * w[6]) * h1 * (1 - h1)
        e2 = (d1 * w[5] + d2 * w[7]) * h2 * (1 - h2)
        g = [e1 * i1, e1 * i2, e2 * i1, e2 * i2, d1 * h1, d1 * h2, d2 * h1, d2 * h2]
        w = [wi - 0.5 * gi for wi, gi in zip(w, g)]
    _, _, o1, o2 = forward(w)
    return 0.5 * (t1 - o1) ** 2 + 0.5 * (t2 - o2) ** 2, o1, o2


def test_4_error_after_one_step():
    ex = we.build()
    assert close(ex.train(1), 0.291027773693599)
    assert close(ex.train(0), reference_training(1)[0], rel=1e-14)


def test_4_error_after_ten_thousand_steps():
    ex = we.build()
    E = ex.train(10_000)
    o1, o2 = (o.data for o in ex.forward()[0])
    assert abs(E - 3.5101878e-05) < 5e-13  # REFERENCE gives 8 significant digits
    assert abs(o1 - 0.015913620) < 5e-10
    assert abs(o2 - 0.984064274) < 5e-10
    ref_E, ref_o1, ref_o2 = reference_training(10_000)
    assert close(E, ref_E, rel=1e-9)  # the engine and the written-out formulas agree
    assert close(o1, ref_o1, rel=1e-11)
    assert close(o2, ref_o2, rel=1e-12)
    assert [b.data for b in ex.biases] == [0.35, 0.60]
    assert ex.steps == 10_000


def test_4_article_figures_three_ways():
    figures = {(f.quantity, f.steps): f for f in we.ARTICLE_FIGURES}
    assert set(figures) == {("E_total", 1), ("E_total", 10_000), ("out_o1", 10_000), ("out_o2", 10_000)}
    one = figures["E_total", 1]
    assert one.article == 0.291027924
    assert close(one.exact, 0.291027773693599)
    assert figures["E_total", 10_000].article == 0.000035085
    assert figures["out_o1", 10_000].article == 0.015912196
    assert figures["out_o2", 10_000].article == 0.984065734
    # the exact column is what the engine computes
    ex = we.build()
    assert close(ex.train(1), one.exact, rel=1e-14)
    # the article prints 9 decimals; its order reproduces every one of them, the correct order does not
    for f in we.ARTICLE_FIGURES:
        assert round(f.article_order, 9) == f.article, f
        assert round(f.exact, 9) != f.article, f
    assert 3 <= we.agreement(figures["E_total", 10_000].exact, figures["E_total", 10_000].article) < 4
    table = we.figures_table()
    for text in ("0.291027924", "0.2910277737", "already updated", "reproduce_article=True"):
        assert text in table
    assert "rounded by hand" not in table
    assert we.agreement(1.0, 1.0) == math.inf


def test_4_reproduce_article_gives_the_articles_figures():
    """The article's code updated w5..w8 before computing the hidden-layer gradients."""
    figures = {(f.quantity, f.steps): f for f in we.ARTICLE_FIGURES}
    ex = we.build()
    E1 = ex.train(1, reproduce_article=True)
    assert close(E1, figures["E_total", 1].article_order, rel=1e-14)
    assert round(E1, 9) == 0.291027924
    E = ex.train(9_999, reproduce_article=True)
    o1, o2 = (o.data for o in ex.forward()[0])
    assert close(E, figures["E_total", 10_000].article_order, rel=1e-9)
    assert (round(o1, 9), round(o2, 9)) == (0.015912196, 0.984065734)
    assert f"{E:.5g}" == "3.5085e-05"
    assert [b.data for b in ex.biases] == [0.35, 0.60]


def test_4_reproduce_article_is_the_written_out_wrong_order():
    """The same order with the article's formulas and no engine."""
    w = list(we.WEIGHTS)
    (i1, i2), (t1, t2), (b1, b2) = we.INPUTS, we.TARGETS, we.BIASES
    h1, h2 = s(w[0] * i1 + w[1] * i2 + b1), s(w[2] * i1 + w[3] * i2 + b1)
    o1, o2 = s(w[4] * h1 + w[5] * h2 + b2), s(w[6] * h1 + w[7] * h2 + b2)
    d1, d2 = (o1 - t1) * o1 * (1 - o1), (o2 - t2) * o2 * (1 - o2)
    for k, g in enumerate([d1 * h1, d1 * h2, d2 * h1, d2 * h2]):
        w[4 + k] -= 0.5 * g  # w5..w8 first
    e1 = (d1 * w[4] + d2 * w[6]) * h1 * (1 - h1)  # ... then the hidden deltas from the NEW w5..w8
    e2 = (d1 * w[5] + d2 * w[7]) * h2 * (1 - h2)
    for k, g in enumerate([e1 * i1, e1 * i2, e2 * i1, e2 * i2]):
        w[k] -= 0.5 * g
    ex = we.build()
    ex.train(1, reproduce_article=True)
    assert_all_close([p.data for p in ex.weights], w)


def test_4_ten_thousand_step_figures_match_the_engine():
    ex = we.build()
    E = ex.train(10_000)
    o1, o2 = (o.data for o in ex.forward()[0])
    figures = {(f.quantity, f.steps): f.exact for f in we.ARTICLE_FIGURES}
    assert close(E, figures["E_total", 10_000], rel=1e-12)
    assert close(o1, figures["out_o1", 10_000], rel=1e-12)
    assert close(o2, figures["out_o2", 10_000], rel=1e-12)


# --- 5. Network([2, 3, 1]) and its SGD recipe ---------------------------------------------


def test_5_network_2_3_1_gradients_are_the_hand_written_backprop(rng):
    net = Network([2, 3, 1], seed=1)
    W1 = [[w.data for w in n.w] for n in net.layers[0].neurons]
    b1 = [n.b.data for n in net.layers[0].neurons]
    W2 = [w.data for w in net.layers[1].neurons[0].w]
    b2 = net.layers[1].neurons[0].b.data
    batch = [([rng.uniform(-1, 1), rng.uniform(-1, 1)], rng.choice([0, 1])) for _ in range(5)]
    # the hand-written 2-3-1 network: mean over the mini-batch of dC/dp, C = 1/2 (y_hat - y)^2
    gW1 = [[0.0, 0.0] for _ in range(3)]
    gb1 = [0.0] * 3
    gW2 = [0.0] * 3
    gb2 = 0.0
    for x, y in batch:
        h = [s(W1[j][0] * x[0] + W1[j][1] * x[1] + b1[j]) for j in range(3)]
        y_hat = s(sum(W2[j] * h[j] for j in range(3)) + b2)
        d2 = (y_hat - y) * y_hat * (1 - y_hat)  # dC/dy_hat = y_hat - y
        gb2 += d2 / len(batch)
        for j in range(3):
            gW2[j] += d2 * h[j] / len(batch)
            d1 = d2 * W2[j] * h[j] * (1 - h[j])
            gb1[j] += d1 / len(batch)
            gW1[j][0] += d1 * x[0] / len(batch)
            gW1[j][1] += d1 * x[1] / len(batch)
    eta = 3.0
    network_sgd(net, batch, epochs=1, mini_batch_size=len(batch), eta=eta)
    expected = []
    for j in range(3):
        expected += [W1[j][0] - eta * gW1[j][0], W1[j][1] - eta * gW1[j][1], b1[j] - eta * gb1[j]]
    expected += [W2[j] - eta * gW2[j] for j in range(3)] + [b2 - eta * gb2]
    assert_all_close([p.data for p in net.parameters()], expected)


def test_5_sgd_recipe_trains_a_separable_problem():
    data_rng = random.Random(0)

    def sample():
        x = [data_rng.uniform(0, 1), data_rng.uniform(0, 1)]
        return x, int(x[1] > x[0])

    training_data = [sample() for _ in range(300)]
    test_data = [sample() for _ in range(100)]
    net = Network([2, 3, 1], seed=0)
    history = net.SGD(training_data, 20, 10, 3.0, test_data=test_data, seed=0)
    assert history["test_accuracy"][-1] >= 0.95
    assert net.evaluate(test_data) == round(100 * history["test_accuracy"][-1])


def test_5_mnist_pipeline_on_small_idx_files(tmp_path):
    # MNIST cannot be downloaded here: the same pipeline on tiny 2x2 "images" written as IDX files
    rng = random.Random(1)
    images, labels = [], []
    for _ in range(120):
        bright = rng.random() < 0.5
        img = [
            [
                rng.randrange(150, 256) if bright and (r + c) % 2 == 0 else rng.randrange(0, 100)
                for c in range(2)
            ]
            for r in range(2)
        ]
        images.append(img)
        labels.append(int(bright))
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images, compress=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels, compress=True)
    X, y = load_mnist(tmp_path / "train-images-idx3-ubyte.gz", tmp_path / "train-labels-idx1-ubyte.gz")
    data = list(zip(X, y))
    net = Network([4, 3, 1], seed=0)
    net.SGD(data[:100], 10, 10, 3.0, seed=0)
    assert net.evaluate(data[100:]) >= 19


# --- 6. the mini-batch matrix form ---------------------------------------------------------


def test_6_engine_equals_the_matrix_formulas():
    np = pytest.importorskip("numpy")
    gen = np.random.default_rng(6)
    m = 7
    X = gen.normal(size=(m, 2))
    Y = gen.uniform(size=(m, 1))
    W1, b1 = gen.normal(size=(2, 3)), gen.normal(size=(1, 3))
    W2, b2 = gen.normal(size=(3, 1)), gen.normal(size=(1, 1))

    def sig(z):
        return 1 / (1 + np.exp(-z))

    o1 = sig(X @ W1 + b1)
    o2 = sig(o1 @ W2 + b2)
    cost = ((o2 - Y) ** 2).sum() / (2 * m)
    D2 = (o2 - Y) * o2 * (1 - o2) / m
    D1 = (D2 @ W2.T) * o1 * (1 - o1)
    dW2, db2 = o1.T @ D2, D2.sum(axis=0)
    dW1, db1 = X.T @ D1, D1.sum(axis=0)

    net = MLP.from_weights(
        [W1.T.tolist(), W2.T.tolist()],
        [b1[0].tolist(), b2[0].tolist()],
        activation="sigmoid",
        output_activation="sigmoid",
    )
    preds = [net(row) for row in X.tolist()]
    loss = half_sse(preds, Y[:, 0].tolist()) / m  # 1/(2m) sum_i (o2_i - Y_i)^2
    loss.backward()
    assert close(loss.data, float(cost))
    hidden, out = net.layers
    assert_all_close([n.w[i].grad for i in range(2) for n in hidden.neurons], dW1.flatten().tolist())
    assert_all_close([n.b.grad for n in hidden.neurons], db1.tolist())
    assert_all_close([w.grad for w in out.neurons[0].w], dW2[:, 0].tolist())
    assert_all_close([out.neurons[0].b.grad], db2.tolist())


# --- 7. Adam on Himmelblau's function --------------------------------------------------------


def himmelblau(x, y):
    return (x * x + y - 11) ** 2 + (x + y * y - 7) ** 2


MINIMA = [
    ((0.0, 0.0), (3.0, 2.0)),
    ((-4.0, 0.0), (-3.779310253, -3.283185991)),
    ((4.0, 0.0), (3.584428340, -1.848126527)),
    ((-2.0, 2.0), (-2.805118087, 3.131312518)),
]


@pytest.mark.parametrize(("start", "minimum"), MINIMA)
def test_7_adam_reaches_the_minima(start, minimum):
    x, y = Value(start[0]), Value(start[1])
    opt = Adam([x, y], lr=1e-3)  # betas (0.9, 0.999), eps 1e-8
    for _ in range(20_000):
        opt.zero_grad()
        himmelblau(x, y).backward()
        opt.step()
    assert abs(x.data - minimum[0]) < 1e-6
    assert abs(y.data - minimum[1]) < 1e-6
    assert himmelblau(x, y).data < 1e-9


@pytest.mark.parametrize(("start", "minimum"), MINIMA)
@pytest.mark.parametrize("method", ["adam", "sgd_momentum"])
def test_7_trajectories_follow_pytorch_step_by_step(torch, start, minimum, method):
    x, y = Value(start[0]), Value(start[1])
    t = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    if method == "adam":
        ours, theirs = Adam([x, y], lr=1e-3), torch.optim.Adam([t], lr=1e-3)
    else:
        ours, theirs = SGD([x, y], lr=1e-3, momentum=0.9), torch.optim.SGD([t], lr=1e-3, momentum=0.9)
    for k in range(600):
        ours.zero_grad()
        himmelblau(x, y).backward()
        ours.step()
        theirs.zero_grad()
        himmelblau(t[0], t[1]).backward()
        theirs.step()
        tx, ty = t.tolist()
        assert close(x.data, tx, abs_=1e-14), (k, x.data, tx)
        assert close(y.data, ty, abs_=1e-14), (k, y.data, ty)
    assert (x.data, y.data) != start
    assert minimum  # the same starts as the table


def test_4_deltas_are_the_engines_net_grads():
    ex = we.build()
    rows = {d.name: d for d in we.deltas(ex)}
    assert set(rows) == {"delta_o1", "delta_o2", "delta_h1", "delta_h2"}
    assert all(p.grad == 0.0 for p in ex.weights)  # deltas() writes no .grad
    _, E = ex.forward()
    E.backward()
    nodes = {n.label: n for n in toposort(E) if n.label}
    for name, d in rows.items():
        assert d.engine == nodes["net_" + name.split("_")[1]].grad
        assert close(d.by_formula, d.engine, rel=1e-14), name
    assert round(rows["delta_o1"].engine, 9) == we.ARTICLE_CHAIN["delta_o1"]  # 0.138498562
    assert "sum" not in rows["delta_h1"].formula
    assert rows["delta_h1"].formula == "out_h1 (1 - out_h1) (delta_o1 w5 + delta_o2 w7)"


def test_4_the_articles_chain_for_w1():
    rows = {name: (engine, article) for name, engine, article in we.chain_w1(we.build())}
    for name, key in [("dE_o1/dout_h1", "dE_o1/dout_h1"), ("dE_o2/dout_h1", "dE_o2/dout_h1"),
                      ("dE/dout_h1 (their sum)", "dE/dout_h1")]:  # fmt: skip
        engine, article = rows[name]
        assert close(engine, we.CHAIN_RULE[key])
        assert round(engine, 9) == article
    assert close(rows["dE/dw1 (the product)"][0], we.CHAIN_RULE["dE/dw1"])
    assert rows["dnet_h1/dw1 (= i1)"][0] == 0.05


def test_seed_004s_3x9_check_literally():
    """Linear units, PyTorch's mse over 3 outputs (a factor 2/3), fed seed 004's printed forward values."""
    from tinygrad_bp import Layer
    from tinygrad_bp.losses import mse_loss

    x = [float(i) for i in range(1, 10)]
    xw, y = [24.4711, 14.6388, 21.9789], [18.3916, 18.7910, 18.4638]
    layer = Layer.from_weights([[v] + [0.0] * 8 for v in xw], [0.0] * 3, activation="linear")
    outs = layer(x)
    assert [o.data for o in outs] == xw
    loss = mse_loss(outs, y)
    weights = [w for n in layer.neurons for w in n.w]
    grads = grad(loss, weights)
    loss.backward()
    assert grads == [w.grad for w in weights]  # grad() and backward() on the same graph
    rows = [[round(g, 4) for g in grads[9 * k : 9 * k + 9]] for k in range(3)]
    assert [r[0] for r in rows] == [4.0530, -2.7681, 2.3434]  # the rows the issue and the article start with
    for k in range(3):
        for i in range(9):
            assert close(grads[9 * k + i], 2 / 3 * (xw[k] - y[k]) * x[i], rel=1e-14)
