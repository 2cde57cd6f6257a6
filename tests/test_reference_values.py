"""REFERENCE.md sections 1-3, built directly from Values: the engine against the closed forms.

Notation as in REFERENCE.md: s(z) = 1 / (1 + e^-z), s'(z) = s(z) (1 - s(z)),
E = 1/2 sum_k (O_k - t_k)^2 and delta_k = (O_k - t_k) O_k (1 - O_k).
The numbers are drawn with random.Random(seed), so every seed is a different check.
"""

from __future__ import annotations

import math
import random

import pytest

import tinygrad_bp as tg
from tinygrad_bp import Value, grad

SEEDS = [0, 1, 4, 2024]
REL = 1e-12


def s(z):
    """The logistic sigmoid in plain floats."""
    return 1.0 / (1.0 + math.exp(-z))


def draw(rng, n):
    """n standard-normal floats (the articles use randn)."""
    return [rng.gauss(0.0, 1.0) for _ in range(n)]


def weighted_sum(weights, inputs, how):
    """sum_j w_j x_j as a Value: one 'linear' node, or products added by one 'sum' node."""
    if how == "linear":
        return tg.linear(weights, inputs, 0.0)
    return tg.sum(w * x for w, x in zip(weights, inputs))


def half_sse(outputs, targets):
    """E = 1/2 sum_k (O_k - t_k)^2 as a Value."""
    return 0.5 * tg.sum((o - t) ** 2 for o, t in zip(outputs, targets))


def approx(expected):
    return pytest.approx(expected, rel=REL, abs=1e-15)


# --- 1. single-output perceptron (seeds 000, 004) ----------------------------------------------


def perceptron(seed, how="sum", n=10):
    """x (1 x n), w (1 x n), target t; O = s(sum_j w_j x_j), E = 1/2 (O - t)^2."""
    rng = random.Random(seed)
    x, w_data, t = draw(rng, n), draw(rng, n), rng.uniform(0.0, 1.0)
    w = [Value(v, f"w{j}") for j, v in enumerate(w_data)]
    out = weighted_sum(w, x, how).sigmoid()
    return x, w, t, out, half_sse([out], [t])


@pytest.mark.parametrize("how", ["sum", "linear"])
@pytest.mark.parametrize("seed", SEEDS)
def test_single_output_perceptron_matches_the_closed_form(seed, how):
    """dE/dw_j0 = (O_0 - t) * O_0 * (1 - O_0) * x_j."""
    x, w, t, out, error = perceptron(seed, how)
    o = s(math.fsum(wj.data * xj for wj, xj in zip(w, x)))
    assert out.data == approx(o)
    error.backward()
    assert [wj.grad for wj in w] == approx([(o - t) * o * (1 - o) * xj for xj in x])


@pytest.mark.parametrize("seed", SEEDS)
def test_single_output_perceptron_matches_torch_mse(torch, seed):
    """torch's MSE has no 1/2: its gradient is twice dE/dw."""
    x, w, t, _, error = perceptron(seed)
    tw = torch.tensor([wj.data for wj in w], dtype=torch.float64, requires_grad=True)
    o = torch.sigmoid(torch.dot(torch.tensor(x, dtype=torch.float64), tw))
    torch.nn.functional.mse_loss(o, torch.tensor(t, dtype=torch.float64)).backward()
    assert [2.0 * g for g in grad(error, w)] == approx(tw.grad.tolist())


@pytest.mark.parametrize("seed", SEEDS)
def test_no_activation_squared_error(seed):
    """Seed 004: x = [1..9], loss = (x.w - y)^2, dloss/dw_i = 2 (x.w - y) x_i."""
    rng = random.Random(seed)
    x = [float(i) for i in range(1, 10)]
    w = [Value(v) for v in draw(rng, 9)]
    y = rng.gauss(0.0, 5.0)
    loss = (weighted_sum(w, x, "sum") - y) ** 2
    residual = math.fsum(wi.data * xi for wi, xi in zip(w, x)) - y
    assert loss.data == approx(residual**2)
    loss.backward()
    assert [wi.grad for wi in w] == approx([2.0 * residual * xi for xi in x])


# --- 2. multi-output perceptron (seeds 000, 004) -----------------------------------------------


def multi_output(seed, n_out, n_in, how="sum"):
    """W (n_out x n_in), O_k = s(sum_j W_kj x_j), E = 1/2 sum_k (O_k - t_k)^2."""
    rng = random.Random(seed)
    x = draw(rng, n_in)
    w = [[Value(v, f"w{j}{k}") for j, v in enumerate(draw(rng, n_in))] for k in range(n_out)]
    t = [rng.uniform(0.0, 1.0) for _ in range(n_out)]
    outputs = [weighted_sum(row, x, how).sigmoid() for row in w]
    return x, w, t, outputs


SHAPES = [(2, 10), (3, 9)]


@pytest.mark.parametrize("how", ["sum", "linear"])
@pytest.mark.parametrize(("n_out", "n_in"), SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_multi_output_perceptron_matches_the_closed_form(seed, n_out, n_in, how):
    """dE/dw_jk = (O_k - t_k) * O_k * (1 - O_k) * x_j."""
    x, w, t, outputs = multi_output(seed, n_out, n_in, how)
    half_sse(outputs, t).backward()
    for k, row in enumerate(w):
        o = s(math.fsum(wj.data * xj for wj, xj in zip(row, x)))
        assert outputs[k].data == approx(o)
        assert [wj.grad for wj in row] == approx([(o - t[k]) * o * (1 - o) * xj for xj in x])


@pytest.mark.parametrize(("n_out", "n_in"), SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_only_the_output_a_weight_feeds_appears_in_its_gradient(seed, n_out, n_in):
    """dE/dW_k. = dE_k/dW_k.; E_k does not depend on W_m. (m != k); other targets do not matter."""
    _, w, t, outputs = multi_output(seed, n_out, n_in)
    total = grad(half_sse(outputs, t), [wj for row in w for wj in row])
    for k, row in enumerate(w):
        alone = half_sse([outputs[k]], [t[k]])
        assert grad(alone, row) == total[k * n_in : (k + 1) * n_in]
        for m, other in enumerate(w):
            if m != k:
                assert grad(alone, other, allow_unused=True) == [None] * n_in
                with pytest.raises(ValueError, match="allow_unused"):
                    grad(alone, other)
        moved = [tk + 0.25 if m != k else tk for m, tk in enumerate(t)]
        assert grad(half_sse(outputs, moved), row) == total[k * n_in : (k + 1) * n_in]


@pytest.mark.parametrize(("n_out", "n_in"), SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_multi_output_perceptron_matches_torch_sum_mse(torch, seed, n_out, n_in):
    """torch's mse_loss(reduction='sum') is 2 E."""
    x, w, t, outputs = multi_output(seed, n_out, n_in)
    tw = torch.tensor([[wj.data for wj in row] for row in w], dtype=torch.float64, requires_grad=True)
    o = torch.sigmoid(tw @ torch.tensor(x, dtype=torch.float64))
    loss = torch.nn.functional.mse_loss(o, torch.tensor(t, dtype=torch.float64), reduction="sum")
    loss.backward()
    engine = grad(half_sse(outputs, t), [wj for row in w for wj in row])
    assert [2.0 * g for g in engine] == approx(tw.grad.flatten().tolist())


# --- 3. hidden layer: the delta rule (seeds 000, 004) ------------------------------------------


def two_layer_net(seed, n_i, n_j, n_k):
    """i -> j -> k, all sigmoid, no biases: O_j = s(sum_i O_i W_ij), O_k = s(sum_j O_j W_jk)."""
    rng = random.Random(seed)
    o_i = draw(rng, n_i)
    w_ij = [[Value(v, f"W{i}{j}") for j, v in enumerate(draw(rng, n_j))] for i in range(n_i)]
    w_jk = [[Value(v, f"W{j}{k}") for k, v in enumerate(draw(rng, n_k))] for j in range(n_j)]
    t = [rng.uniform(0.0, 1.0) for _ in range(n_k)]
    o_j = [tg.sum(o_i[i] * w_ij[i][j] for i in range(n_i)).sigmoid() for j in range(n_j)]
    o_k = [tg.sum(o_j[j] * w_jk[j][k] for j in range(n_j)).sigmoid() for k in range(n_k)]
    return o_i, w_ij, w_jk, t, half_sse(o_k, t)


def delta_rule(o_i, w_ij, w_jk, t):
    """(dE/dW_ij, dE/dW_jk) by the delta rule, in plain floats, computed backwards layer by layer.

    delta_k = (O_k - t_k) O_k (1 - O_k); dE/dW_jk = O_j delta_k;
    dE/dW_ij = O_i O_j (1 - O_j) sum_k delta_k W_jk.
    """
    n_i, n_j, n_k = len(w_ij), len(w_jk), len(t)
    o_j = [s(math.fsum(o_i[i] * w_ij[i][j].data for i in range(n_i))) for j in range(n_j)]
    o_k = [s(math.fsum(o_j[j] * w_jk[j][k].data for j in range(n_j))) for k in range(n_k)]
    delta_k = [(o_k[k] - t[k]) * o_k[k] * (1 - o_k[k]) for k in range(n_k)]
    d_jk = [[o_j[j] * delta_k[k] for k in range(n_k)] for j in range(n_j)]
    back = [math.fsum(delta_k[k] * w_jk[j][k].data for k in range(n_k)) for j in range(n_j)]
    d_ij = [[o_i[i] * o_j[j] * (1 - o_j[j]) * back[j] for j in range(n_j)] for i in range(n_i)]
    return d_ij, d_jk


@pytest.mark.parametrize(("n_i", "n_j", "n_k"), [(2, 2, 2), (3, 4, 2), (10, 5, 3)])
@pytest.mark.parametrize("seed", SEEDS)
def test_hidden_layer_gradients_follow_the_delta_rule(seed, n_i, n_j, n_k):
    o_i, w_ij, w_jk, t, error = two_layer_net(seed, n_i, n_j, n_k)
    error.backward()
    d_ij, d_jk = delta_rule(o_i, w_ij, w_jk, t)
    for row, expected in zip(w_jk, d_jk):
        assert [w.grad for w in row] == approx(expected)
    for row, expected in zip(w_ij, d_ij):
        assert [w.grad for w in row] == approx(expected)
