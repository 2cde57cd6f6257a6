"""tinygrad_bp.losses against torch.nn.functional (float64): values and gradients."""

from __future__ import annotations

import math
import random

import pytest

from tinygrad_bp import Value, grad
from tinygrad_bp.losses import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    half_sse,
    hinge_loss,
    l2_penalty,
    mse_loss,
)

REL = 1e-12


def close(a, b, rel=REL, abs_=1e-15):
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def allclose(xs, ys, rel=REL, abs_=1e-15):
    return len(xs) == len(ys) and all(close(a, b, rel, abs_) for a, b in zip(xs, ys))


def values(xs):
    return [Value(x) for x in xs]


def torch_grads(torch, fn, *arrays):
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out = fn(*ts)
    out.backward()
    return out.item(), [t.grad.tolist() for t in ts]


@pytest.fixture
def rng():
    return random.Random(20240601)


# --- mse_loss and half_sse --------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_loss_matches_torch(torch, rng, reduction):
    for n in (1, 2, 7):
        p = [rng.uniform(-3, 3) for _ in range(n)]
        t = [rng.uniform(-3, 3) for _ in range(n)]
        pv, tv = values(p), values(t)
        loss = mse_loss(pv, tv, reduction=reduction)
        gp = grad(loss, pv + tv)
        expected, (tp, tt) = torch_grads(
            torch, lambda a, b: torch.nn.functional.mse_loss(a, b, reduction=reduction), p, t
        )
        assert close(loss.data, expected)
        assert allclose(gp[:n], tp)
        assert allclose(gp[n:], tt)


def test_mse_loss_accepts_numbers_values_and_scalars():
    assert mse_loss(3.0, 1.0).data == 4.0
    assert mse_loss([Value(1.0), 2.0], [0.0, Value(0.0)], reduction="sum").data == 5.0
    assert mse_loss((1.0, 2.0), (0.0, 0.0)).data == 2.5
    x = Value(2.0)
    (g,) = grad(mse_loss(x, 5.0), [x])
    assert g == 2 * (2.0 - 5.0)


def test_mse_loss_errors():
    with pytest.raises(ValueError, match="pred has 2 elements but target has 3"):
        mse_loss([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="empty"):
        mse_loss([], [])
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'max'"):
        mse_loss([1.0], [2.0], reduction="max")


def test_mse_loss_without_reduction_matches_torch(torch):
    p, t = [0.5, -1.0, 2.0], [1.0, 1.0, -1.0]
    ours = mse_loss(values(p), t, reduction="none")
    theirs = torch.nn.functional.mse_loss(torch.tensor(p), torch.tensor(t), reduction="none")
    assert [v.data for v in ours] == pytest.approx(theirs.tolist(), rel=1e-15)


def test_half_sse_is_half_the_summed_squared_error(torch, rng):
    p = [rng.uniform(-1, 1) for _ in range(4)]
    t = [rng.uniform(-1, 1) for _ in range(4)]
    pv = values(p)
    loss = half_sse(pv, t)
    expected, (tp,) = torch_grads(
        torch, lambda a: 0.5 * torch.nn.functional.mse_loss(a, torch.tensor(t), reduction="sum"), p
    )
    assert close(loss.data, expected)
    assert allclose(grad(loss, pv), tp)
    assert allclose(grad(loss, pv), [a - b for a, b in zip(p, t)])  # dE/do_k = o_k - t_k
    assert loss.op == "half_sse"  # one node


# --- binary cross-entropy ----------------------------------------------------------


def test_binary_cross_entropy_matches_torch(torch, rng):
    p = [rng.uniform(0.01, 0.99) for _ in range(6)]
    t = [0.0, 1.0, 0.3, 1.0, 0.0, 0.75]
    pv = values(p)
    for reduction in ("mean", "sum"):
        loss = binary_cross_entropy(pv, t, reduction=reduction)
        expected, (tp,) = torch_grads(
            torch,
            lambda a, reduction=reduction: torch.nn.functional.binary_cross_entropy(
                a, torch.tensor(t), reduction=reduction
            ),
            p,
        )
        assert close(loss.data, expected)
        assert allclose(grad(loss, pv), tp)


def test_binary_cross_entropy_at_the_edges():
    # p = 1 with t = 1 and p = 0 with t = 0 are fine: that log is never taken
    assert binary_cross_entropy([1.0, 0.0], [1.0, 0.0]).data == 0.0
    # p = 0 with t = 1: log is clamped at -100 as in PyTorch, a finite loss, not an error
    assert binary_cross_entropy([0.0], [1.0]).data == 100.0
    assert binary_cross_entropy([1.0, 0.5], [0.0, 0.5], reduction="sum").data == pytest.approx(100.0 + math.log(2))
    with pytest.raises(ValueError, match="must lie in"):
        binary_cross_entropy([1.5], [1.0])
    with pytest.raises(ValueError, match="must lie in"):
        binary_cross_entropy([0.5], [2.0])


def test_bce_with_logits_matches_torch(torch, rng):
    z = [rng.uniform(-6, 6) for _ in range(6)]
    t = [0.0, 1.0, 0.3, 1.0, 0.0, 0.75]
    zv = values(z)
    for reduction in ("mean", "sum"):
        loss = binary_cross_entropy_with_logits(zv, t, reduction=reduction)
        expected, (tz,) = torch_grads(
            torch,
            lambda a, reduction=reduction: torch.nn.functional.binary_cross_entropy_with_logits(
                a, torch.tensor(t), reduction=reduction
            ),
            z,
        )
        assert close(loss.data, expected)
        assert allclose(grad(loss, zv), tz)


@pytest.mark.parametrize("z", [1000.0, -1000.0, 700.0, -745.0, 40.0, -40.0])
@pytest.mark.parametrize("t", [0.0, 1.0, 0.25])
def test_bce_with_logits_is_stable_for_huge_logits(torch, z, t):
    zv = Value(z)
    loss = binary_cross_entropy_with_logits(zv, t)
    (g,) = grad(loss, [zv])
    expected, (tz,) = torch_grads(
        torch, lambda a: torch.nn.functional.binary_cross_entropy_with_logits(a, torch.tensor(t)), z
    )
    assert math.isfinite(loss.data)
    assert math.isfinite(g)
    assert close(loss.data, expected, rel=1e-12, abs_=1e-15)  # torch itself loses digits below 1e-16
    assert close(g, tz, rel=1e-12, abs_=1e-15)
    assert close(g, sigmoid(z) - t, rel=1e-12, abs_=1e-15)  # d/dz = s(z) - t
    assert close(g, (1 - t) * sigmoid(z) - t * sigmoid(-z), rel=1e-14, abs_=1e-300)  # the same, unrounded
    exact = t * softplus(-z) + (1 - t) * softplus(z)
    assert close(loss.data, exact, rel=1e-14, abs_=1e-300)


def sigmoid(x):
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@pytest.mark.parametrize(("z", "t"), [(40.0, 1.0), (-40.0, 0.0), (700.0, 1.0), (-700.0, 0.0)])
def test_bce_with_logits_keeps_the_digits_of_a_tiny_loss(z, t):
    # -log s(40) = log(1 + e^-40) = 4.2e-18: computing softplus(z) - t z would cancel it to 0.0
    loss = binary_cross_entropy_with_logits(Value(z), t)
    assert loss.data > 0.0
    assert close(loss.data, math.log1p(math.exp(-abs(z))), rel=1e-14, abs_=0.0)


# --- cross-entropy -----------------------------------------------------------------


def test_cross_entropy_matches_torch(torch, rng):
    for n in (1, 2, 5):
        z = [rng.uniform(-4, 4) for _ in range(n)]
        for target in range(n):
            zv = values(z)
            loss = cross_entropy(zv, target)
            expected, (tz,) = torch_grads(
                torch,
                lambda a, target=target: torch.nn.functional.cross_entropy(
                    a[None, :], torch.tensor([target])
                ),
                z,
            )
            assert close(loss.data, expected, abs_=1e-14)
            assert allclose(grad(loss, zv), tz, abs_=1e-15)


@pytest.mark.parametrize(
    "z", [[1000.0, 0.0, -1000.0], [-1000.0, -1000.0, -999.0], [1000.0, 1000.0], [800.0, -800.0, 0.0]]
)
def test_cross_entropy_is_stable_for_huge_logits(torch, z):
    for target in range(len(z)):
        zv = values(z)
        loss = cross_entropy(zv, target)
        g = grad(loss, zv)
        expected, (tz,) = torch_grads(
            torch,
            lambda a, target=target: torch.nn.functional.cross_entropy(a[None, :], torch.tensor([target])),
            z,
        )
        assert math.isfinite(loss.data)
        assert all(math.isfinite(x) for x in g)
        assert close(loss.data, expected, abs_=1e-12)
        assert allclose(g, tz, abs_=1e-15)
        assert abs(sum(g)) < 1e-12  # softmax - one_hot sums to zero


def test_cross_entropy_second_derivatives_match_torch(torch):
    """create_graph=True records the row's derivative (softmax - t) as a graph: its Hessian is torch's."""
    z, t = [0.5, -1.25, 2.0], [0.2, 0.5, 0.3]
    zv = values(z)
    first = grad(cross_entropy(zv, t), zv, create_graph=True)
    hessian = [grad(d, zv, allow_unused=True) for d in first]
    tz = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(tz[None, :], torch.tensor([t], dtype=torch.float64))
    (g,) = torch.autograd.grad(loss, tz, create_graph=True)
    expected = [torch.autograd.grad(g[i], tz, retain_graph=True)[0].tolist() for i in range(3)]
    assert allclose([x.data for x in first], g.tolist(), abs_=1e-15)
    for row, want in zip(hessian, expected):
        assert allclose(row, want, abs_=1e-15)


def test_cross_entropy_second_derivatives_at_logits_that_span_more_than_the_float_range():
    # z_0 - z_1 overflows: the row never computes it (not even for Values, with create_graph), and
    # computes no derivative for the constant target (which would be m - z_1, too large)
    z = [Value(1e308), Value(-1e308)]
    first = grad(cross_entropy(z, 0), z, create_graph=True)
    assert [d.data for d in first] == [0.0, 0.0]
    assert grad(first[0], z, materialize_grads=True) == [0.0, 0.0]


def test_cross_entropy_targets_are_a_class_or_a_sequence_of_numbers():
    np = pytest.importorskip("numpy")
    assert close(cross_entropy([0.0, 1.0], np.array(1)).data, math.log1p(math.exp(-1.0)))  # a 0-d array
    assert close(cross_entropy([0.0, 1.0], np.array([0.0, 1.0])).data, math.log1p(math.exp(-1.0)))
    for bad in ({0: 1.0, 1: 0.0}, {0.0, 1.0}, [True, False], iter([0.0, 1.0]), [None, 1.0], ["a", 1.0]):
        with pytest.raises(ValueError, match="cross_entropy"):
            cross_entropy([0.0, 1.0], bad)
    with pytest.raises(ValueError, match="one number or Value per class"):
        cross_entropy(Value(1.0), 0)


def test_cross_entropy_accepts_numbers_and_checks_the_target():
    assert close(cross_entropy([0.0, 0.0], 1).data, math.log(2))
    np = pytest.importorskip("numpy")
    assert close(cross_entropy([0.0, 0.0], np.int64(1)).data, math.log(2))  # a label read from an array
    with pytest.raises(ValueError, match="empty"):
        cross_entropy([], 0)
    for bad in (2, -1, 1.0, True, None, "1"):
        with pytest.raises(ValueError, match="target_index must be an int in"):
            cross_entropy([0.0, 1.0], bad)
    with pytest.raises(ValueError, match="3 class probabilities for 2 logits"):
        cross_entropy([0.0, 1.0], [0.2, 0.3, 0.5])
    assert close(cross_entropy([0.0, 0.0], [0.5, 0.5]).data, math.log(2))  # class probabilities, as torch


# --- hinge loss and the L2 penalty -----------------------------------------------------


def test_hinge_loss_is_micrograds_demo_loss(torch, rng):
    s = [rng.uniform(-2, 2) for _ in range(8)] + [0.5, -0.5]
    y = [rng.choice([-1, 1]) for _ in range(8)] + [1, -1]  # y s = 0.5: margin not reached
    sv = values(s)
    loss = hinge_loss(sv, y)
    expected = sum(max(0.0, 1 - yi * si) for si, yi in zip(s, y)) / len(s)
    assert close(loss.data, expected)
    g = grad(loss, sv)
    assert allclose(g, [(-yi / len(s) if 1 - yi * si > 0 else 0.0) for si, yi in zip(s, y)])
    ts = torch.tensor(s, requires_grad=True)
    torch.relu(1 - torch.tensor(y, dtype=torch.float64) * ts).mean().backward()
    assert allclose(g, ts.grad.tolist())
    assert close(hinge_loss(sv, y, reduction="sum").data, expected * len(s))


def test_hinge_loss_takes_one_score_and_numbers():
    s = Value(0.25)
    loss = hinge_loss(s, 1)
    assert loss.data == 0.75
    assert grad(loss, [s]) == [-1.0]
    assert hinge_loss([2.0, -0.5], [1, 1]).data == 0.75


def test_hinge_loss_errors():
    with pytest.raises(ValueError, match="pred has 2 elements but target has 1"):
        hinge_loss([1.0, 2.0], [1])
    with pytest.raises(ValueError, match="reduction"):
        hinge_loss([1.0], [1], reduction="max")


def test_l2_penalty(rng):
    ps = values([rng.uniform(-1, 1) for _ in range(5)])
    pen = l2_penalty(ps, 1e-4)
    assert close(pen.data, 1e-4 * sum(p.data**2 for p in ps))
    assert allclose(grad(pen, ps), [2e-4 * p.data for p in ps])
    assert close(l2_penalty(ps).data, sum(p.data**2 for p in ps))
    assert l2_penalty([]).data == 0.0


@pytest.mark.parametrize(
    ("logits", "target", "expected"),
    [
        ([1e16, 1e16], 1, math.log(2.0)),  # logsumexp(z) - z_t cancelled this to 0.0
        ([-1e308, -1e308], 1, math.log(2.0)),
        ([1e308, -1e308], 0, 0.0),  # z_1 - z_0 overflowed
        ([1e8, 1e8 + 1.0], 0, math.log1p(math.e)),  # log(1 + e) = 1.3132616875182228
    ],
)
def test_cross_entropy_keeps_its_digits_at_huge_logits(logits, target, expected):
    z = [Value(v) for v in logits]
    loss = cross_entropy(z, target)
    assert loss.data == pytest.approx(expected, rel=1e-15, abs=1e-300)
    loss.backward()
    assert sum(x.grad for x in z) == pytest.approx(0.0, abs=1e-15)  # softmax - one_hot sums to 0


def test_bce_below_1e_12_is_the_exact_derivative_where_torch_divides_by_its_epsilon(torch):
    """README's table: at p = 1e-20, t = 1 the loss is -log p and d/dp = -1/p; torch's backward
    gives (p - t) / max(p (1 - p), 1e-12) instead (a deliberate difference)."""
    from tinygrad_bp.losses import binary_cross_entropy

    p = Value(1e-20)
    loss = binary_cross_entropy(p, 1.0)
    loss.backward()
    assert close(loss.data, -math.log(1e-20), rel=1e-12)
    assert close(p.grad, -1e20, rel=1e-12)
    tp = torch.tensor(1e-20, dtype=torch.float64, requires_grad=True)
    torch.nn.functional.binary_cross_entropy(tp, torch.tensor(1.0, dtype=torch.float64)).backward()
    assert close(tp.grad.item(), (1e-20 - 1.0) / 1e-12, rel=1e-6)  # 8 orders of magnitude from -1/p
