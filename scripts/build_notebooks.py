"""Generate the lesson notebooks in ``notebooks/`` from the cell sources below, then run them.

Every notebook is written here as a list of cells (markdown and code as plain strings), so a
change to a lesson is a reviewable diff of this file. The script builds each notebook with
nbformat, executes it top to bottom with nbclient in a fresh kernel of THIS interpreter (in a
temporary directory, so no stray files land in the repository) and stores it WITH its outputs,
so the notebooks read well where they are browsed (GitHub renders stored outputs).

    python scripts/build_notebooks.py              # build and run every notebook
    python scripts/build_notebooks.py 02 04        # only the notebooks whose names start so
    python scripts/build_notebooks.py --no-execute # write the cells without running them

The stored files are reproducible: cell ids and widget ids are fixed, nbclient records no
timestamps, the kernels run with PYTHONHASHSEED=0, the code is seeded and prints no timings.
``tests/test_notebooks.py`` re-executes every notebook (headless, in a temporary directory,
without touching the stored files) and checks that the stored ones carry outputs and no errors.
"""



from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from textwrap import dedent

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
TIMEOUT = 300  # seconds per cell: a hung kernel fails the build instead of blocking it
KERNEL_DISPLAY_NAME = "Python 3 (ipykernel)"

Cell = nbformat.NotebookNode


def md(text: str) -> Cell:
    """A markdown cell."""
    return new_markdown_cell(dedent(text).strip("\n"))


def code(text: str) -> Cell:
    """A code cell."""
    return new_code_cell(dedent(text).strip("\n"))


# =================================================================================================
# 00 quickstart
# =================================================================================================


def quickstart() -> list[Cell]:
    """00: the whole toolbox on one small expression."""
    return [
        md(r"""
        # Quickstart: a scalar autograd engine in a few cells

        `tinygrad_bp` records every arithmetic operation on a `Value` into a graph, and
        `backward()` runs the chain rule over that graph in reverse topological order. This
        notebook shows the whole toolbox on one small expression:

        1. build an expression of labelled `Value`s;
        2. run `backward()` and read the gradients;
        3. draw the graph;
        4. step through the forward and backward passes one node at a time;
        5. explain a gradient as a **sum over paths** of products of local derivatives;
        6. check gradients against finite differences with `gradcheck`;
        7. define a new operation from its forward function and its derivative.
        """),
        code("""

        from tinygrad_bp import Value, custom_op, grad, gradcheck, GradcheckError
        from tinygrad_bp.explain import explain
        from tinygrad_bp.stepper import Stepper
        from tinygrad_bp.viz import show
        """),
        md("""
        ## 1. An expression

        Each `Value` holds a number (`.data`) and, after a backward pass, a gradient (`.grad`).
        Labels are optional; they name the nodes in drawings and tables. The input `a` is used
        **twice**, which will matter in section 5.
        """),
        code("""
        a = Value(2.0, label="a")
        b = Value(-3.0, label="b")
        c = Value(10.0, label="c")

        e = a * b;  e.label = "e"
        d = e + c;  d.label = "d"
        L = d * a;  L.label = "L"    # L = (a*b + c) * a
        L
        """),
        md("""
        Every result remembers the operation that made it (`.op`) and its operands (`.inputs`,
        in argument order). That is the whole graph: nothing else is stored.
        """),
        code("""
        print(L.op, [x.label for x in L.inputs])
        print(d.op, [x.label for x in d.inputs])
        print(e.op, [x.label for x in e.inputs])
        """),
        md("""
        ## 2. Backward

        `L.backward()` seeds dL/dL = 1 and walks the graph from `L` back to the leaves.
        """),
        code("""
        L.backward()
        for v in (a, b, c, e, d, L):
            print(f"{v.label}: data {v.data:5g}   grad dL/d{v.label} = {v.grad:g}")
        """),
        md(r"""
        By hand: $L = (ab + c)\,a = a^2 b + ca$, so $\partial L/\partial a = 2ab + c = -2$,
        $\partial L/\partial b = a^2 = 4$ and $\partial L/\partial c = a = 2$. The engine agrees.

        `grad` computes the same derivatives without touching any `.grad`:
        """),
        code("""
        grad(L, [a, b, c])
        """),
        md("""
        ## 3. Drawing the graph

        One box per `Value` (label, data, grad) and one ellipse per operation. `a` feeds two
        operations, so two edges leave it.
        """),
        code("""
        show(L)
        """),
        md("""
        With `edge_labels=True` each edge carries its **local derivative**, d(result)/d(operand),
        evaluated at the current data. Backpropagation is nothing but multiplying these along
        the edges and adding where paths meet.
        """),
        code("""
        show(L, edge_labels=True)
        """),
        md("""
        ## 4. Stepping through the passes

        `Stepper(L)` lists the forward steps (inputs first) and the backward steps (output
        first). Each backward step shows the upstream gradient that arrives at a node, the
        local derivative for each operand, their product (the contribution) and the operand's
        running total. Watch `a`: it gets 4 at the first backward step and -6 at the last, and
        only then is its gradient final (-2).
        """),
        code("""
        stepper = Stepper(L)
        print(stepper)
        """),
        md("""
        `stepper.to_html(path)` writes the same steps as ONE self-contained page that steps in
        any browser, with buttons or the arrow keys, without a kernel or a network: a way to
        share a lesson. (`tinygrad-bp demo` writes one for the articles' worked example.)
        """),
        code("""
        page = stepper.to_html("L_steps.html")
        print(f"wrote L_steps.html: {len(page):,} characters, {len(stepper)} steps")
        """),
        md("""
        In a live notebook, `stepper.widget()` gives *previous / next* buttons, a slider that
        counts steps from 1 like the text, and a search box that jumps to the step where a
        parameter's gradient is complete. The picture on the left is the current step's node
        (yellow, bold) with its operation and operands, always in view at full size; the small
        picture on the right is the whole graph with the current node marked. Opened without
        running, the notebook shows the first step as a picture: run the cell to step.
        """),
        code("""
        stepper.widget()
        """),
        md("""
        ## 5. A gradient is a sum over paths

        dL/da is the sum, over every path from `a` up to `L`, of the product of the local
        derivatives along the path. `a` reaches `L` directly (factor d = 4) and through `e` and
        `d` (factors 2 x 1 x -3 = -6): 4 + (-6) = -2.
        """),
        code("""
        explanation = explain(L, a)
        explanation
        """),
        code("""
        print(explanation)
        print("grad(L, [a]) =", grad(L, [a])[0])
        """),
        md("""
        ## 6. Checking gradients with finite differences

        `gradcheck(fn, inputs)` compares the engine's gradient of `fn` at `inputs` with central
        differences (f(x + eps) - f(x - eps)) / 2 eps, input by input.
        """),
        code("""
        print(gradcheck(lambda a, b, c: (a * b + c) * a, [2.0, -3.0, 10.0]))
        print(gradcheck(lambda x, y: (x * y).tanh() + (x / y).exp() - y.sigmoid().log(), [0.3, -1.2]))
        """),
        md(r"""
        ## 7. Your own operation

        `custom_op(name, forward, derivative)` registers a scalar operation from its forward
        function and its local derivative. Here softsign, $s(x) = x / (1 + |x|)$ with
        $s'(x) = 1 / (1 + |x|)^2$. Once registered it behaves like a built-in: it is recorded
        in the graph, drawn, differentiated, stepped through and gradient-checked.
        (The names are registered once per kernel: running this cell twice raises an error
        saying that the operation already exists; restart the kernel to redefine it.)
        """),
        code("""
        softsign = custom_op("softsign", lambda x: x / (1 + abs(x)), lambda x: 1 / (1 + abs(x)) ** 2)

        x = Value(1.5, label="x")
        y = softsign(2 * x);  y.label = "y"
        y.backward()
        print(f"y = {y.data:.6f}, dy/dx = {x.grad:.6f}  (by hand: 2 / (1 + 3)^2 = {2 / 16:.6f})")
        print("gradcheck:", gradcheck(lambda x: softsign(2 * x), [1.5]))
        show(y, edge_labels=True)
        """),
        md("""
        A wrong derivative is caught: here the square in the denominator is forgotten.
        `gradcheck` raises `GradcheckError` naming the input, both values and the errors.
        """),
        code("""
        softsign_bad = custom_op("softsign_bad", lambda x: x / (1 + abs(x)), lambda x: 1 / (1 + abs(x)))

        try:
            gradcheck(lambda x: softsign_bad(2 * x), [1.5])
        except GradcheckError as error:
            print(error)
        """),
        md("""
        ## 8. Where the derivatives live

        Every built-in operation is one row of the rule table, `tinygrad_bp.rules.TABLE`: its
        forward and its local derivatives, written once as expressions (`out` is the result).
        The stepper prints a node's row in each backward step; the engine's fast loop is
        generated from the same rows (`scripts/generate.py`), and so are the tape's NumPy kernels.
        """),
        code("""
        from tinygrad_bp.rules import RULES, TABLE

        for row in TABLE[:8]:
            print(f"{row.name:8}  out = {row.forward:24}  {RULES[row.name].formula}")
        """),
        md("""
        The branch of the generated backward loop for `*`: the row's derivatives `b` and `a`,
        written inline (`a._data` is a's number), each share added to the input's running sum.
        """),
        code("""
        import inspect
        import textwrap
        from tinygrad_bp import engine

        source = inspect.getsource(engine._run_fast)
        start = source.rindex("\\n", 0, source.index('elif op == "*"')) + 1
        print(textwrap.dedent(source[start : source.index("elif", start + 20)]))
        """),
        md("""
        **Next:** `01_perceptrons.ipynb` checks the engine against the closed-form gradients of
        the perceptron and the delta rule.
        """),
    ]


# =================================================================================================
# 01 perceptrons
# =================================================================================================


def perceptrons() -> list[Cell]:
    """01: perceptrons and the delta rule, the engine beside the formulas (REFERENCE 1-3)."""
    return [
        md(r"""
        # Perceptrons and the delta rule: the engine beside the formulas

        The articles derive the gradients of sigmoid units by hand. Here the engine computes
        them by its general mechanism (a graph of `Value`s and the chain rule in reverse
        topological order), and each result is set beside the closed-form formula:

        1. one sigmoid output: $\partial E/\partial w_{j0} = (O_0 - t)\,O_0(1 - O_0)\,x_j$;
        2. several outputs: $\partial E/\partial w_{jk} = (O_k - t_k)\,O_k(1 - O_k)\,x_j$;
        3. a hidden layer, the **delta rule**:
           $\partial E/\partial W_{jk} = O_j\,\delta_k$ and
           $\partial E/\partial W_{ij} = O_i\,O_j(1 - O_j)\sum_k \delta_k W_{jk}$
           with $\delta_k = (O_k - t_k)\,O_k(1 - O_k)$.

        The error is always $E = \frac12 \sum_k (O_k - t_k)^2$ and $s'(x) = s(x)(1 - s(x))$.
        """),
        code("""
        import random

        import numpy as np

        import tinygrad_bp
        from tinygrad_bp import Layer, MLP, Neuron
        from tinygrad_bp.losses import half_sse, mse_loss
        from tinygrad_bp.stepper import Stepper

        rng = random.Random(0)   # inputs and targets; the weights come from each module's seed


        def print_table(header, rows):
            widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
            for r in [header, ["-" * w for w in widths], *rows]:
                print("  ".join(str(cell).rjust(w) for cell, w in zip(r, widths)))
        """),
        md("""
        ## 1. One sigmoid output, 1 x 10

        A `Neuron` with 10 inputs computes $O_0 = s(\\sum_j w_{j0} x_j + b)$; its weights are
        `neuron.w` (a list of `Value`s) and `neuron.b`.
        """),
        code("""
        x = [round(rng.uniform(-1, 1), 3) for _ in range(10)]
        t = 0.8
        neuron = Neuron(10, activation="sigmoid", seed=1)

        O = neuron(x)
        E = half_sse([O], [t])        # E = 1/2 (O - t)^2
        E.backward()

        O0 = O.data
        formula = [(O0 - t) * O0 * (1 - O0) * xj for xj in x]
        engine = [w.grad for w in neuron.w]
        print(f"O_0 = {O0:.6f}, E = {E.data:.6f}\\n")
        print_table(
            ["j", "x_j", "engine dE/dw_j0", "(O-t) O (1-O) x_j", "|difference|"],
            [[j, xj, f"{g:.12f}", f"{f:.12f}", f"{abs(g - f):.1e}"]
             for j, (xj, g, f) in enumerate(zip(x, engine, formula))],
        )
        print("\\nmax |difference| =", max(abs(g - f) for g, f in zip(engine, formula)))
        """),
        md("""
        The articles check this against a framework's mean-squared error, which has no 1/2
        factor: its gradient is exactly twice the one above.
        """),
        code("""
        neuron.zero_grad()
        mse_loss([neuron(x)], [t]).backward()          # (O - t)^2, as torch.nn.MSELoss
        print([round(w.grad / f, 12) for w, f in zip(neuron.w, formula)])
        """),
        md("""
        A second check from the articles has no activation at all: x = [1..9],
        loss = (x . w - y)^2 and dloss/dw_i = 2 (x . w - y) x_i. A `"linear"` neuron with its bias
        at 0 is exactly x . w.
        """),
        code("""
        x9 = [float(i) for i in range(1, 10)]
        y9 = 3.0
        w9 = [round(rng.uniform(-0.5, 0.5), 3) for _ in range(9)]
        linear_neuron = Neuron.from_weights(w9, 0.0, activation="linear")

        p = linear_neuron(x9)
        loss = (p - y9) ** 2
        loss.backward()

        engine = [w.grad for w in linear_neuron.w]
        formula = [2 * (p.data - y9) * xi for xi in x9]
        print(f"x . w = {p.data:.4f}, loss = {loss.data:.4f}")
        print("engine :", [round(g, 6) for g in engine])
        print("formula:", [round(f, 6) for f in formula])
        print("max |difference| =", max(abs(g - f) for g, f in zip(engine, formula)))
        """),
        md("""
        ## 2. Several outputs: 2 x 10 and 3 x 9

        A `Layer` of K sigmoid neurons over the same inputs. Neuron k holds row k of the weight
        matrix, so `engine[k, j]` is dE/dw_jk. The formula in NumPy is an outer product.
        """),
        code("""
        def layer_check(n_in, n_out, seed):
            x = np.array([rng.uniform(-1, 1) for _ in range(n_in)])
            t = np.array([rng.uniform(0, 1) for _ in range(n_out)])
            layer = Layer(n_in, n_out, activation="sigmoid", seed=seed)
            outs = layer(list(x))
            half_sse(outs, list(t)).backward()

            O = np.array([o.data for o in outs])
            engine = np.array([[w.grad for w in n.w] for n in layer.neurons])   # (K, J)
            formula = np.outer((O - t) * O * (1 - O), x)                        # (K, J)
            return layer, x, t, engine, formula


        np.set_printoptions(precision=6, suppress=True, linewidth=120)
        for n_in, n_out in [(10, 2), (9, 3)]:
            layer, x, t, engine, formula = layer_check(n_in, n_out, seed=n_out)
            print(f"{n_out} x {n_in}: engine dE/dw (row k = output k)")
            print(engine)
            print(f"max |engine - formula| = {np.abs(engine - formula).max():.2e}\\n")
        """),
        md("""
        **Only the output that a weight feeds appears in its gradient.** Change the target of
        output 1 and recompute: row 0 does not move, row 1 does.
        """),
        code("""
        # the 3 x 9 layer of the last check: same inputs, target of output 1 moved by 0.5
        before = engine.copy()
        layer.zero_grad()
        t_changed = t.copy()
        t_changed[1] += 0.5
        half_sse(layer(list(x)), list(t_changed)).backward()
        after = np.array([[w.grad for w in n.w] for n in layer.neurons])
        print("largest change of each row:", np.abs(after - before).max(axis=1))
        """),
        md("""
        ## 3. A hidden layer: the delta rule

        Layers i -> j -> k (5 -> 4 -> 3), all sigmoid. The engine knows nothing about deltas: it
        just runs the chain rule backwards through the graph. Running the layers one at a
        time keeps the intermediate outputs $O_j$ for the formulas.
        """),
        code("""
        model = MLP(5, [4, 3], activation="sigmoid", output_activation="sigmoid", seed=3)
        hidden, output = model.layers

        O_i = np.array([rng.uniform(-1, 1) for _ in range(5)])
        t = np.array([rng.uniform(0, 1) for _ in range(3)])
        Oj_values = hidden(list(O_i))
        Ok_values = output(Oj_values)
        E = half_sse(Ok_values, list(t))
        E.label = "E"
        E.backward()

        O_j = np.array([v.data for v in Oj_values])
        O_k = np.array([v.data for v in Ok_values])
        W_jk = np.array([[w.data for w in n.w] for n in output.neurons]).T     # (J, K)

        delta_k = (O_k - t) * O_k * (1 - O_k)
        dW_jk = np.outer(O_j, delta_k)                             # O_j delta_k
        dW_ij = np.outer(O_i, O_j * (1 - O_j) * (W_jk @ delta_k))  # O_i O_j(1-O_j) sum_k delta_k W_jk

        engine_jk = np.array([[w.grad for w in n.w] for n in output.neurons]).T
        engine_ij = np.array([[w.grad for w in n.w] for n in hidden.neurons]).T
        print("dE/dW_jk (engine):\\n", engine_jk)
        print(f"max |engine - O_j delta_k|                         = {np.abs(engine_jk - dW_jk).max():.2e}")
        print("dE/dW_ij (engine):\\n", engine_ij)
        print(f"max |engine - O_i O_j(1-O_j) sum_k delta_k W_jk| = {np.abs(engine_ij - dW_ij).max():.2e}")
        """),
        md(r"""
        The deltas themselves are in the graph: $\delta_k = \partial E/\partial net_k$ is the
        gradient of each output neuron's `net` node, and $\delta_j = O_j(1 - O_j)\sum_k \delta_k
        W_{jk}$ that of each hidden neuron's `net` (`net.grad` after `backward()`):
        """),
        code("""
        net = {n.label: n for n in tinygrad_bp.toposort(E) if n.label.endswith(".net")}
        delta_j = O_j * (1 - O_j) * (W_jk @ delta_k)
        for k, d in enumerate(delta_k):
            print(f"delta_k[{k}] = {d: .15f}   layer2.neuron{k}.net.grad = {net[f'layer2.neuron{k}.net'].grad: .15f}")
        for j, d in enumerate(delta_j):
            print(f"delta_j[{j}] = {d: .15f}   layer1.neuron{j}.net.grad = {net[f'layer1.neuron{j}.net'].grad: .15f}")
        """),
        md("""
        "A layer's gradient needs the layer after it, so it is computed backwards." The order in
        which the engine visits the operation nodes (here taken from the stepper) shows exactly
        that: the loss, then every node of the output layer, then the hidden layer.
        """),
        code("""
        print(" -> ".join(step.node.label for step in Stepper(E).backward_steps))
        """),
        md(r"""
        ## Deriving s'(x) = s(x)(1 - s(x)): the engine finds it from exp, + and /

        The articles use $s'(x) = s(x)(1 - s(x))$ throughout. Build $s(x) = 1 / (1 + e^{-x})$ from
        the engine's elementary operations (negation, `exp`, `+`, `/`) and nothing else, and the
        chain rule through those four nodes gives exactly that. Line by line:
        $u = -x$, $e = e^{u}$, $d = 1 + e$, $s = 1/d$;
        $\partial s/\partial d = -1/d^2$, $\partial d/\partial e = 1$, $\partial e/\partial u = e^{u}$,
        $\partial u/\partial x = -1$; the product is $e^{-x}/(1 + e^{-x})^2 = s(x)(1 - s(x))$.
        """),
        code("""
        from tinygrad_bp import Value
        from tinygrad_bp.explain import explain

        x = Value(0.3775, label="x")          # net_h1 of the worked example
        u = -x;        u.label = "u"        # u = -x
        e = u.exp();   e.label = "e"        # e = exp(u)
        d = 1 + e;     d.label = "d"        # d = 1 + e
        s = 1 / d;     s.label = "s"        # s = 1 / d
        s.backward()
        print(explain(s, x))
        print(f"\\nthe engine's ds/dx = {x.grad:.15f}")
        print(f"s (1 - s)          = {s.data * (1 - s.data):.15f}")
        print(f"the sigmoid node   : {Value(0.3775).sigmoid().data:.15f} = s, "
              f"whose rule is s(1 - s) directly")
        """),
        *seed004_checks(),
        md("""
        **Next:** `02_worked_example.ipynb` follows the articles' 2-2-2 network number by number.
        """),
    ]


# =================================================================================================
# 02 worked example
# =================================================================================================


def worked_example() -> list[Cell]:
    """02: the 2-2-2 worked example, number by number (REFERENCE 4)."""
    return [
        md(r"""
        # The 2-2-2 worked example, step by step

        The articles' classic example: two inputs, two sigmoid hidden units, two sigmoid
        outputs, one shared bias per layer (never updated) and learning rate 0.5.

        $h_1 = s(w_1 i_1 + w_2 i_2 + b_1)$, $h_2 = s(w_3 i_1 + w_4 i_2 + b_1)$,
        $o_1 = s(w_5 h_1 + w_6 h_2 + b_2)$, $o_2 = s(w_7 h_1 + w_8 h_2 + b_2)$,
        $E = \frac12 (t_1 - o_1)^2 + \frac12 (t_2 - o_2)^2$.

        This notebook reproduces the forward pass, the chain rule for $w_5$ and $w_1$ (with the
        stepper and as a sum over paths), one training step, and 10,000 steps, and sets the
        exact float64 figures beside the article's.
        """),
        code("""
        import tinygrad_bp
        from tinygrad_bp import worked_example as we
        from tinygrad_bp.explain import explain
        from tinygrad_bp.stepper import Stepper
        from tinygrad_bp.viz import show

        ex = we.build()   # the article's network, in the article's names
        print(ex.model)
        print("inputs", we.INPUTS, "targets", we.TARGETS)
        print("biases", [f"{b.label} = {b.data}" for b in ex.biases], "(not updated), learning rate", ex.lr)
        w = {p.label: p for p in ex.weights}
        print(", ".join(f"{name} = {p.data:.2f}" for name, p in w.items()))
        """),
        md("""
        Every node carries the article's name: `i1`, `i2`, `t1`, `t2`, `w1`..`w8`, `net_h1`,
        `out_h1`, ..., `E_o1`, `E_o2`, `E_total`. As in the article, the two hidden neurons add
        ONE shared `Value` `b1`, and the two outputs one `b2`.

        ## The forward pass
        """),
        code("""
        out, E = ex.forward()
        stepper = Stepper(E)
        for step in stepper.forward_steps:
            print(stepper.step_text(step.index))
        """),
        code("""
        node = {n.label: n for n in tinygrad_bp.toposort(E) if n.label}
        print(f"{'quantity':<8} {'engine':>20} {'reference':>20} {'|difference|':>13}")
        for name, ref in we.FORWARD.items():
            value = node[name].data
            print(f"{name:<8} {value:>20.15f} {ref:>20.15f} {abs(value - ref):>13.1e}")
        """),
        md("""
        ## The backward pass

        After `E.backward()` every box carries its gradient.
        """),
        code("""
        E.backward()
        show(E)
        """),
        md(r"""
        ### The deltas

        The article calls $\delta_{o1} = \partial E/\partial net_{o1}$ the error of output unit
        $o_1$: $\delta_k = (out_k - t_k)\, out_k (1 - out_k)$. A hidden unit's delta sums what
        it receives from the layer after it: $\delta_j = out_j (1 - out_j) \sum_k \delta_k w_{jk}$.
        The engine holds every delta: it is `net.grad`.
        """),
        code("""
        for d in we.deltas(ex):
            print(f"{d.name:<9} = {d.formula:<50} = {d.by_formula:.15f}   engine net.grad {d.engine:.15f}")
        print(f"\\nthe article prints delta_o1 = {we.ARTICLE_CHAIN['delta_o1']}; "
              f"net_o1.grad = {node['net_o1'].grad:.15f}")
        """),
        md(r"""
        ### w5: one path

        $w_5$ reaches $E_{total}$ through $E_{o1}$, $out_{o1}$ and $net_{o1}$ only. The stepper's
        backward steps along that path multiply the upstream gradient by one local derivative
        at a time: $\partial E_{total}/\partial E_{o1} = 1$, $\partial E_{o1}/\partial out_{o1} =
        out_{o1} - t_1$, then $s'(net_{o1})$, then $\partial net_{o1}/\partial w_5 = out_{h1}$.
        """),
        code("""
        on_path_w5 = {E, node["E_o1"], node["out_o1"], node["net_o1"]}
        for step in stepper.backward_steps:
            if step.node in on_path_w5:
                print(stepper.step_text(step.index), end="\\n\\n")
        """),
        md("""
        `explain` gives the same as a product of factors: 1 x the article's
        0.741365069552316 x 0.186815601808959 x 0.593269992107187.
        """),
        code("""
        explain(E, w["w5"])
        """),
        md(r"""
        ### w1: the article's chain

        $out_{h1}$ feeds both outputs, so the article first adds what it receives from each:
        $\partial E/\partial out_{h1} =
        \partial E_{o1}/\partial out_{h1} + \partial E_{o2}/\partial out_{h1}$,
        then multiplies by $\partial out_{h1}/\partial net_{h1}$ and $\partial net_{h1}/\partial w_1 = i_1$.
        """),
        code("""
        print(f"{'quantity':<24} {'engine':>20} {'the article prints':>19}")
        for name, engine, article in we.chain_w1(ex):
            print(f"{name:<24} {engine:>20.15f} {'' if article is None else article:>19}")
        """),
        md("""
        In the stepper this sum is the running total of `out_h1`, which is complete only after
        both output neurons have been visited:
        """),
        code("""
        h1, net_h1 = node["out_h1"], node["net_h1"]
        for step in stepper.backward_steps:
            if any(c.input is h1 or c.input is net_h1 or c.input is w["w1"] for c in step.contributions):
                print(stepper.step_text(step.index), end="\\n\\n")
        """),
        md("""
        `explain` writes the same gradient as a sum over its two paths, one through each output:
        """),
        code("""
        explain(E, w["w1"])
        """),
        md("""
        In a live notebook, step through it yourself: *next* moves one step, and the search box
        jumps to the step where a parameter's gradient is complete. The left picture follows the
        current node; the right one is the whole network with the current node marked. A graph
        too big to draw whole still steps: the left picture stays the node's neighbourhood, and
        the overview draws each neuron as one box.
        """),
        code("""
        stepper.widget()
        """),
        md("""
        ## All eight gradients and one training step

        Gradient descent updates every weight at once, from the old values:
        w <- w - 0.5 dE/dw. The biases are not updated (the optimizer gets `ex.weights` only).
        """),
        code("""
        grads = [p.grad for p in ex.weights]
        ex.optimizer().step()
        print(f"{'':<3} {'dE/dw engine':>19} {'reference':>19}   {'w after 1 step':>17} {'reference':>17}")
        for k, (p, g) in enumerate(zip(ex.weights, grads)):
            print(f"{p.label:<3} {g:>19.15f} {we.GRADIENTS[k]:>19.15f}   "
                  f"{p.data:>17.15f} {we.UPDATED_WEIGHTS[k]:>17.15f}")
        E_after_one = ex.forward()[1].data
        print(f"\\nE_total after one step: {E_after_one:.15f} (it was {E.data:.15f})")
        """),
        md("""
        ## 10,000 steps

        The same step, repeated. Each step builds a fresh graph (`ex.forward()`), runs it
        backwards and updates the weights.
        """),
        code("""
        import matplotlib.pyplot as plt

        optimizer = ex.optimizer()
        history = [E.data]                      # E_total before each step
        for _ in range(9_999):
            optimizer.zero_grad()
            _, error = ex.forward()
            error.backward()
            optimizer.step()
            history.append(error.data)
        (o1, o2), error = ex.forward()
        history.append(error.data)
        print(f"after 10,000 steps: E_total = {error.data:.8g}, "
              f"out_o1 = {o1.data:.9f}, out_o2 = {o2.data:.9f}")

        fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
        ax.semilogy(history)
        ax.set_xlabel("step")
        ax.set_ylabel("E_total")
        plt.show()
        """),
        md("""
        ### Why the article's later figures differ: the order of the updates

        The article prints E_total = 0.291027924 after one step and 0.000035085 after 10,000;
        the correct float64 figures are 0.291027773693599 and 3.5101878e-05. Not rounding: the
        code the article was written from updated the output weights w5..w8 FIRST and then
        computed the hidden-layer gradients with those NEW weights (the local derivative
        d net_o1 / d out_h1 is w5). `train(steps, reproduce_article=True)` does exactly that,
        and reproduces every printed digit of the article:
        """),
        code("""
        article = we.build()
        print(f"article order, after 1 step: E_total = {article.train(1, reproduce_article=True):.9f}")
        article.train(9_999, reproduce_article=True)
        (a1, a2), a_error = article.forward()
        print(f"article order, after 10,000: E_total = {a_error.data:.9f}, "
              f"out_o1 = {a1.data:.9f}, out_o2 = {a2.data:.9f}")
        print()
        print(we.figures_table())
        """),
        md("""
        The lesson: **compute every gradient from the old weights, then update them all.**
        Updating a layer before the layers below it have used its weights changes the
        gradients of the layers below.
        """),
        md("""
        ## A graph too big to draw whole

        micrograd's demo network, `MLP(2, [16, 16, 1])`, on one sample with a squared error, is
        a graph of 408 Values: drawn whole it would be tens of thousands of pixels tall. The
        stepper still steps through it: the left picture is always the current node's
        neighbourhood (a neuron shows its w_i, x_i pairs and its bias; the rest are counted),
        and the overview draws each neuron as one box.
        """),
        code("""
        from tinygrad_bp import MLP

        big = MLP(2, [16, 16, 1], activation="relu", seed=1337)
        loss = (big([0.5, -0.25]) - 1.0) ** 2
        big_stepper = Stepper(loss)
        print(f"{len(tinygrad_bp.toposort(loss))} Values; {big_stepper!r}")
        """),
        code("""
        big_stepper.widget()
        """),
        md("""
        **Next:** `03_minibatch_network.ipynb` trains a small network with mini-batches and
        checks the matrix form of the same formulas.
        """),
    ]


# =================================================================================================
# 03 mini-batch network
# =================================================================================================


def minibatch_network() -> list[Cell]:
    """03: Network([2, 3, 1]) with mini-batch SGD, and the matrix form (REFERENCE 5-6)."""
    return [
        md(r"""
        # A small network trained with mini-batch SGD, and the matrix form

        The articles write a 2-3-1 sigmoid network by hand, then generalise it to a
        `Network(sizes)` class trained with `SGD(training_data, epochs, mini_batch_size, eta,
        test_data)`: shuffle, split into mini-batches, average the mini-batch's gradients,
        step with learning rate $\eta$, report test accuracy after each epoch. The loss is
        $C = \frac12 (\hat y - y)^2$, whose derivative is $\hat y - y$. (The articles' own code
        returns $\hat y$ alone there: a bug, not copied.)

        The second half checks the **matrix form** of the same gradients over a whole
        mini-batch against the scalar engine run sample by sample.
        """),
        code("""
        import random

        import matplotlib.pyplot as plt
        import numpy as np

        from tinygrad_bp.data import make_moons
        from tinygrad_bp.losses import half_sse
        from tinygrad_bp.train import Network, batches
        """),
        md("""
        ## Data: two moons

        200 points for training and 200 for testing, label 1 for the inner moon.
        """),
        code("""
        X_train, y_train = make_moons(200, noise=0.1, seed=1)
        X_test, y_test = make_moons(200, noise=0.1, seed=2)
        training_data = list(zip(X_train, y_train))
        test_data = list(zip(X_test, y_test))

        Xa, ya = np.array(X_train), np.array(y_train)
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=80)
        ax.scatter(Xa[:, 0], Xa[:, 1], c=ya, cmap="coolwarm", s=14, edgecolors="k", linewidths=0.3)
        ax.set_title("training data")
        plt.show()
        """),
        md("""
        ## The recipe, written out

        Every piece of the articles' `SGD` is one line here. The engine does the calculus:
        each sample's `backward(1 / len(mini_batch))` adds its share of the mini-batch mean
        into every parameter's `.grad`.
        """),
        code("""
        def sgd_by_hand(net, training_data, epochs, mini_batch_size, eta, test_data, seed):
            rng = random.Random(seed)
            for epoch in range(epochs):
                for mini_batch in batches(training_data, mini_batch_size, rng):   # shuffled, then split
                    net.zero_grad()
                    for x, y in mini_batch:
                        C = half_sse([net(x)], [y])                             # 1/2 (y_hat - y)^2
                        C.backward(1 / len(mini_batch))                          # the mean over the batch
                    for p in net.parameters():
                        p.data -= eta * p.grad
                if epoch % 5 == 4:
                    print(f"epoch {epoch + 1:>2}: {net.evaluate(test_data)} / {len(test_data)}")


        net = Network([2, 3, 1], seed=0)
        print(net, "with", len(net.parameters()), "parameters")
        sgd_by_hand(net, training_data, epochs=30, mini_batch_size=10, eta=3.0, test_data=test_data, seed=0)
        """),
        md("""
        The library's `Network.SGD` (that is, `tinygrad_bp.train.network_sgd`) is the same
        recipe. It runs on `tinygrad_bp.train.fit`, whose default engine replays a recorded
        tape of the per-sample graph over each whole mini-batch (see `05_training.ipynb`)
        instead of building one graph per sample: the same arithmetic, in a different order.
        With the same starting weights and the same shuffling seed it ends on the same
        weights, up to rounding, and it returns the history of every epoch.
        """),
        code("""
        net2 = Network([2, 3, 1], seed=0)
        history = net2.SGD(training_data, 30, 10, 3.0, test_data, seed=0)
        same = max(abs(p.data - q.data) for p, q in zip(net.parameters(), net2.parameters()))
        print(f"max |weight difference| between the two runs: {same:.1e}")
        print(f"test accuracy after 30 epochs: {history['test_accuracy'][-1]:.3f}")

        fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
        ax.plot(range(1, 31), history["loss"], label="training loss")
        ax.plot(range(1, 31), history["test_accuracy"], label="test accuracy")
        ax.set_xlabel("epoch")
        ax.legend()
        plt.show()
        """),
        md("""
        A 2-3-1 network can only bend its boundary so much; the decision boundary (where the
        output crosses 0.5) shows what it learned.
        """),
        code("""
        from tinygrad_bp import no_grad

        xs, ys = np.meshgrid(np.linspace(-1.5, 2.5, 60), np.linspace(-1.0, 1.5, 40))
        with no_grad():
            zs = np.array([[net2([a, b]).data for a, b in zip(row_x, row_y)] for row_x, row_y in zip(xs, ys)])
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=80)
        ax.contourf(xs, ys, zs, levels=[0, 0.5, 1], cmap="coolwarm", alpha=0.35)
        Xt, yt = np.array(X_test), np.array(y_test)
        ax.scatter(Xt[:, 0], Xt[:, 1], c=yt, cmap="coolwarm", s=14, edgecolors="k", linewidths=0.3)
        ax.set_title("Network([2, 3, 1]) on the test set")
        plt.show()
        """),
        md(r"""
        ## The matrix form of one mini-batch

        For a mini-batch $X \in \mathbb{R}^{m \times 2}$, $Y \in \mathbb{R}^{m \times 1}$:
        $o_1 = s(X W_1 + b_1)$, $o_2 = s(o_1 W_2 + b_2)$ and
        $C = \frac{1}{2m} \sum_i (o_{2,i} - Y_i)^2$. With
        $D_2 = \frac1m (o_2 - Y) \odot o_2 \odot (1 - o_2)$ and
        $D_1 = (D_2 W_2^T) \odot o_1 \odot (1 - o_1)$:

        $dW_2 = o_1^T D_2$, $db_2 = $ column sums of $D_2$, $dW_1 = X^T D_1$, $db_1 = $ column sums of $D_1$.

        The matrices are read out of the network (`W1[i, j]` is the weight from input i to
        hidden unit j, i.e. `hidden.neurons[j].w[i]`).
        """),
        code("""
        def s(z):
            return 1 / (1 + np.exp(-z))


        net = Network([2, 3, 1], seed=5)
        hidden, output = net.layers
        W1 = np.array([[w.data for w in n.w] for n in hidden.neurons]).T     # (2, 3)
        b1 = np.array([[n.b.data for n in hidden.neurons]])                   # (1, 3)
        W2 = np.array([[w.data for w in n.w] for n in output.neurons]).T     # (3, 1)
        b2 = np.array([[n.b.data for n in output.neurons]])                   # (1, 1)

        rng = np.random.default_rng(0)
        m = 16
        X = rng.normal(size=(m, 2))
        Y = rng.uniform(size=(m, 1))

        o1 = s(X @ W1 + b1)
        o2 = s(o1 @ W2 + b2)
        D2 = (o2 - Y) * o2 * (1 - o2) / m
        D1 = (D2 @ W2.T) * o1 * (1 - o1)
        matrix = {"dW1": X.T @ D1, "db1": D1.sum(axis=0, keepdims=True),
                  "dW2": o1.T @ D2, "db2": D2.sum(axis=0, keepdims=True)}
        print("cost (matrix form):", float(((o2 - Y) ** 2).sum() / (2 * m)))
        """),
        md("""
        The scalar engine, sample by sample: the same cost as a sum of m small graphs.
        """),
        code("""
        net.zero_grad()
        cost = 0.0
        for x, y in zip(X, Y):
            C = half_sse([net(list(x))], list(y)) / m
            C.backward()
            cost += C.data
        engine = {"dW1": np.array([[w.grad for w in n.w] for n in hidden.neurons]).T,
                  "db1": np.array([[n.b.grad for n in hidden.neurons]]),
                  "dW2": np.array([[w.grad for w in n.w] for n in output.neurons]).T,
                  "db2": np.array([[n.b.grad for n in output.neurons]])}
        print("cost (engine):      ", cost)
        for name in matrix:
            print(f"{name}: max |engine - matrix| = {np.abs(engine[name] - matrix[name]).max():.2e}")
        print("\\ndW1 =\\n", engine["dW1"])
        """),
        md(r"""
        The article writes the local derivatives of the matrix form one by one:
        $\partial o_2/\partial i_2 = o_2 \odot (1 - o_2)$, $\partial i_2/\partial W_2 = o_1$,
        $\partial i_2/\partial o_1 = W_2$ (printed as $\partial i_2/\partial o_2 = w_2$, a typo),
        $\partial i_2/\partial b_2 = 1$, $\partial o_1/\partial i_1 = o_1 \odot (1 - o_1)$,
        $\partial i_1/\partial W_1 = X$. For the first sample, each one beside the engine's (`grad`
        of one node with respect to the node below it):
        """),
        code("""
        from tinygrad_bp import grad

        o2_ = net(list(X[0]))                # the first sample's graph
        i2_ = o2_.inputs[0]                   # w . o1 + b2, one linear node
        o1_ = list(i2_.inputs[3:6])           # the hidden outputs
        i1_ = [o.inputs[0] for o in o1_]      # the hidden sums
        rows = [("do2/di2 = o2 (1 - o2)", o2_.data * (1 - o2_.data), grad(o2_, [i2_])[0]),
                ("di2/db2 = 1", 1.0, grad(i2_, [output.neurons[0].b])[0])]
        for j in range(3):
            rows.append((f"di2/dW2[{j}] = o1[{j}]", o1_[j].data, grad(i2_, [output.neurons[0].w[j]])[0]))
            rows.append((f"di2/do1[{j}] = W2[{j}]", W2[j, 0], grad(i2_, [o1_[j]])[0]))
            rows.append((f"do1[{j}]/di1[{j}] = o1 (1 - o1)", o1_[j].data * (1 - o1_[j].data), grad(o1_[j], [i1_[j]])[0]))
            rows.append((f"di1[{j}]/dW1[0,{j}] = X[0]", X[0, 0], grad(i1_[j], [hidden.neurons[j].w[0]])[0]))
        for name, formula, engine_value in rows:
            print(f"{name:<32} {formula: .15f}   engine {engine_value: .15f}")
        """),
        md("""
        ## The articles' MNIST run, on the digits that scikit-learn ships

        The articles train `Network([784, 30, 1])` on MNIST for 30 epochs (mini-batch 10,
        eta 3.0). MNIST cannot be downloaded here (`tinygrad_bp.data.load_mnist` reads its IDX
        files when you have them); scikit-learn's 8x8 digits stand in. The article's network has
        ONE output for ten classes, which cannot work (the end of this notebook runs it as
        written and shows why); here `Network([64, 30, 10])`, one sigmoid output per class (the
        prediction is the largest output), mini-batch 10, eta 3.0, for 10 epochs.
        """),
        code("""
        from tinygrad_bp.data import load_digits

        X_tr, y_tr, X_te, y_te = load_digits()
        digits_net = Network([64, 30, 10], seed=0)
        h = digits_net.SGD(list(zip(X_tr, y_tr)), 10, 10, 3.0, list(zip(X_te, y_te)), seed=0)
        for epoch, acc in enumerate(h["test_accuracy"], start=1):
            print(f"epoch {epoch}: test accuracy {acc:.3f}")
        """),
        md(r"""
        ## The 2-3-1 gradients in the article's own names

        The article names the 2-3-1 network's weights $w_{13}, w_{23}$ (into unit 3), $w_{14},
        w_{24}$, $w_{15}, w_{25}$, then $w_{36}, w_{46}, w_{56}$ (into the output unit 6), the biases
        $b_1..b_4$, the sums $\sigma_3..\sigma_6$ and the outputs $\breve y_3..\breve y_6$, with
        $l = \frac12 (\breve y_6 - y_6)^2$. It derives

        $\partial l/\partial w_{36} = (\breve y_6 - y_6)\, S(\sigma_6)(1 - S(\sigma_6))\, \breve y_3$ and
        $\partial l/\partial w_{13} = (\breve y_6 - y_6)\, S(\sigma_6)(1 - S(\sigma_6))\, w_{36}\,
        S(\sigma_3)(1 - S(\sigma_3))\, x_1$, and the same for the others. The engine, on a graph
        labelled in those names:
        """),
        code("""
        import math
        import random

        from tinygrad_bp import Value, sigmoid, toposort

        rng = random.Random(2)
        x1 = Value(0.7, label="x1", requires_grad=False)
        x2 = Value(-0.4, label="x2", requires_grad=False)
        y6 = 1.0                                  # the target
        w = {name: Value(rng.uniform(-1, 1), label=name)
             for name in ["w13", "w23", "w14", "w24", "w15", "w25", "w36", "w46", "w56"]}
        b = {name: Value(rng.uniform(-1, 1), label=name) for name in ["b1", "b2", "b3", "b4"]}
        hidden = {}
        for k, bias in zip((3, 4, 5), ("b1", "b2", "b3")):
            sigma = w[f"w1{k}"] * x1 + w[f"w2{k}"] * x2 + b[bias]; sigma.label = f"sigma{k}"
            hidden[k] = sigmoid(sigma);                              hidden[k].label = f"y{k}"
        sigma6 = w["w36"] * hidden[3] + w["w46"] * hidden[4] + w["w56"] * hidden[5] + b["b4"]
        sigma6.label = "sigma6"
        y_hat = sigmoid(sigma6); y_hat.label = "y6"
        l = 0.5 * (y_hat - y6) ** 2; l.label = "l"
        l.backward()

        S6 = y_hat.data
        common = (S6 - y6) * S6 * (1 - S6)       # (y6^ - y6) S(sigma6)(1 - S(sigma6))
        print(f"{'weight':<6} {'the article':>20} {'engine':>20}")
        for k in (3, 4, 5):
            print(f"w{k}6   {common * hidden[k].data:>20.15f} {w[f'w{k}6'].grad:>20.15f}")
        for k in (3, 4, 5):
            Sk = hidden[k].data
            for i, xi in ((1, x1), (2, x2)):
                article = common * w[f"w{k}6"].data * Sk * (1 - Sk) * xi.data
                print(f"w{i}{k}   {article:>20.15f} {w[f'w{i}{k}'].grad:>20.15f}")
        """),
        *mnist_honestly(),
        md("""
        **Next:** `04_himmelblau_adam.ipynb` uses the same engine to minimise a function with Adam.
        """),
    ]


# =================================================================================================
# 04 Himmelblau with Adam
# =================================================================================================


def himmelblau_adam() -> list[Cell]:
    """04: Himmelblau's function minimised with Adam from four starts (REFERENCE 7)."""
    return [
        md(r"""
        # Minimising Himmelblau's function with Adam

        Gradients are not only for neural networks. Himmelblau's function

        $$f(x, y) = (x^2 + y - 11)^2 + (x + y^2 - 7)^2$$

        has four minima, all with $f = 0$. Starting Adam (lr = 1e-3, betas 0.9 / 0.999,
        eps 1e-8, PyTorch's update rule) from four points and running 20,000 steps, each run
        ends in a different minimum. The two parameters are just two `Value`s.
        """),
        code("""
        import matplotlib.pyplot as plt
        import numpy as np

        from tinygrad_bp import Adam, Value


        def himmelblau(x, y):
            return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2
        """),
        md("""
        The same Python function works on NumPy arrays (for plotting) and on `Value`s (for
        gradients). The surface over [-6, 6]^2:
        """),
        code("""
        grid = np.linspace(-6, 6, 121)
        GX, GY = np.meshgrid(grid, grid)
        GZ = himmelblau(GX, GY)

        fig = plt.figure(figsize=(7, 5), dpi=80)
        ax = fig.add_subplot(projection="3d")
        ax.plot_surface(GX, GY, GZ, cmap="viridis", rstride=2, cstride=2, linewidth=0)
        ax.view_init(elev=40, azim=-60)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_zlabel("f(x, y)")
        plt.show()
        """),
        md(r"""
        First a check of the engine's gradient against the derivatives by hand,
        $\partial f/\partial x = 4x(x^2 + y - 11) + 2(x + y^2 - 7)$ and
        $\partial f/\partial y = 2(x^2 + y - 11) + 4y(x + y^2 - 7)$:
        """),
        code("""
        def gradient_by_hand(x, y):
            return (4 * x * (x**2 + y - 11) + 2 * (x + y**2 - 7),
                    2 * (x**2 + y - 11) + 4 * y * (x + y**2 - 7))


        for point in [(0.0, 0.0), (1.5, -2.5)]:
            x, y = Value(point[0], label="x"), Value(point[1], label="y")
            himmelblau(x, y).backward()
            print(f"at {point}: engine {(x.grad, y.grad)}, by hand {gradient_by_hand(*point)}")
        """),
        md("""
        ## Adam from four starts

        The loop is PyTorch's: zero the gradients, build the function, `backward()`,
        `optimizer.step()`. 20,000 steps of a tiny graph, four times, take a few seconds in
        pure Python. Every 100th point is kept for the plot.
        """),
        code("""
        starts = [(0.0, 0.0), (-4.0, 0.0), (4.0, 0.0), (-2.0, 2.0)]
        paths = {}
        for start in starts:
            x, y = Value(start[0], label="x"), Value(start[1], label="y")
            optimizer = Adam([x, y], lr=1e-3)
            path = [start]
            for step in range(1, 20_001):
                optimizer.zero_grad()
                f = himmelblau(x, y)
                f.backward()
                optimizer.step()
                if step % 100 == 0:
                    path.append((x.data, y.data))
            paths[start] = np.array(path)
        """),
        code("""
        reference = {(0.0, 0.0): (3.0, 2.0), (-4.0, 0.0): (-3.779310253, -3.283185991),
                     (4.0, 0.0): (3.584428340, -1.848126527), (-2.0, 2.0): (-2.805118087, 3.131312518)}
        print(f"{'start':<12} {'ends at (this run)':<30} {'REFERENCE':<28} {'f at the end':>12}")
        for start, path in paths.items():
            end = path[-1]
            ref = reference[start]
            print(f"{str(start):<12} ({end[0]:.9f}, {end[1]:.9f})   ({ref[0]:.9f}, {ref[1]:.9f})   "
                  f"{himmelblau(*end):>12.2e}")
        """),
        md("""
        On the contour plot (log-spaced levels) each run slides from its start (circle) to its
        minimum (star): Adam's steps are about lr long at first, so the runs move at nearly
        constant speed until they reach the valley floor.
        """),
        code("""
        fig, ax = plt.subplots(figsize=(6.5, 5.5), dpi=80)
        levels = np.logspace(-1, 3.2, 25)                       # 0.1 ... ~1600
        colors = plt.cm.viridis(np.linspace(0, 1, len(levels)))  # one colour per level
        ax.contour(GX, GY, GZ, levels=levels, colors=colors, linewidths=0.7)
        for (start, path), color in zip(paths.items(), ["C3", "C1", "C0", "C2"]):
            ax.plot(path[:, 0], path[:, 1], color=color, linewidth=2, label=f"from {start}")
            ax.plot(*start, "o", color=color, markersize=7)
            ax.plot(*path[-1], "*", color=color, markersize=14, markeredgecolor="k")
        ax.set_xlim(-6, 6)
        ax.set_ylim(-6, 6)
        ax.set_aspect("equal")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.legend(loc="lower left", fontsize=8)
        ax.set_title("Adam, lr 1e-3, 20,000 steps")
        plt.show()
        """),
        *adam_explained(),
        md("""
        **Next:** `05_training.ipynb` trains real classifiers: micrograd's two moons and the
        handwritten digits.
        """),
    ]


# =================================================================================================
# 05 training
# =================================================================================================


def training() -> list[Cell]:
    """05: two moons (micrograd's demo) and the digits, trained with the tape replay."""
    return [
        md("""
        # Training classifiers: two moons and handwritten digits

        Two complete training runs:

        1. **two moons** with micrograd's demo setup: `MLP(2, [16, 16, 1])` with ReLU hidden
           units and a linear output, the hinge loss plus 1e-4 L2, full-batch SGD with a
           decaying learning rate, and the decision boundary it learns;
        2. **handwritten digits** (scikit-learn's 8x8 images): an MLP with a cross-entropy loss,
           mini-batches, loss and accuracy curves, and some of the digits it gets wrong.

        The scalar engine builds one graph per sample. For training, `tinygrad_bp.tape`
        records that graph once and replays it on a whole mini-batch with NumPy, giving the
        same loss and the same gradients many times faster.
        """),
        code("""
        import matplotlib.pyplot as plt
        import numpy as np

        from tinygrad_bp import MLP, SGD, no_grad
        from tinygrad_bp.data import load_digits, make_moons
        from tinygrad_bp.losses import l2_penalty
        from tinygrad_bp.tape import BatchObjective, trace
        from tinygrad_bp.train import accuracy, fit, micrograd_init
        """),
        md("""
        ## 1. Two moons, micrograd's demo

        100 points, labels mapped to -1 / +1 for the hinge loss
        $L = \\frac1n \\sum_i \\max(0, 1 - y_i s_i) + 10^{-4} \\sum_p p^2$.
        `micrograd_init` draws the weights as micrograd does (w ~ U(-1, 1), b = 0).
        """),
        code("""
        X, y01 = make_moons(100, noise=0.1, seed=1337)
        y = [1 if t else -1 for t in y01]

        model = MLP(2, [16, 16, 1], activation="relu", output_activation="linear", seed=1337)
        micrograd_init(model, seed=1337)
        params = model.parameters()
        print(model, "with", len(params), "parameters")
        """),
        md("""
        One training step is: zero the gradients, compute the batch loss and its gradient,
        step. `BatchObjective(model, "hinge", penalty=...)` computes the loss of the whole
        batch by replaying the model's recorded graph; it adds the gradient into every
        `.grad` exactly as `backward()` does. The learning rate decays from 1.0 as in
        micrograd. (`tinygrad_bp.train.micrograd_demo()` runs this whole section with the
        scalar engine, one graph per sample; here the loop is written out.)
        """),
        code("""
        objective = BatchObjective(model, "hinge", penalty=lambda: l2_penalty(params, 1e-4))
        optimizer = SGD(params, lr=1.0)
        moons_loss = []
        for k in range(100):
            optimizer.zero_grad()
            result = objective(X, y)
            optimizer.lr = 1.0 - 0.9 * k / 100
            optimizer.step()
            moons_loss.append(result.loss)
            if k % 20 == 0 or k == 99:
                print(f"step {k:>3}: loss {result.loss:.4f}")
        print("training accuracy:", accuracy(model, X, y, loss="hinge"))
        """),
        md("""
        The tape is a shortcut, not a different model: the scalar engine gives the same loss
        and gradients. A check on the current weights:
        """),
        code("""
        from tinygrad_bp.losses import hinge_loss

        optimizer.zero_grad()
        scalar_loss = hinge_loss([model(x) for x in X], y) + l2_penalty(params, 1e-4)
        scalar_loss.backward()
        scalar_grads = np.array([p.grad for p in params])

        optimizer.zero_grad()
        tape_loss = objective(X, y).loss
        tape_grads = np.array([p.grad for p in params])
        print(f"loss: scalar {scalar_loss.data:.12f}, tape {tape_loss:.12f}")
        print(f"max |gradient difference| = {np.abs(scalar_grads - tape_grads).max():.1e}")
        optimizer.zero_grad()
        """),
        md("""
        Each step above still goes through the Values: the replay reads every parameter's
        `.data` and adds into every `.grad`, and SGD loops over the 337 parameters in Python.
        Inside `objective.hold(optimizer)` the parameters live in two NumPy arrays instead
        (`held.data` and `held.grad`: all 337 numbers, in `model.parameters()` order), and SGD
        runs its usual formula once on the whole array. The Values keep the numbers of the
        block's start until it ends, and get the new ones then. (`fit` does this for every
        epoch it trains on the tape.)
        Twenty more steps each way, from the same weights, with `check="none"`: the library's own
        model and loss build the same graph for every sample, so the first sample of each batch
        need not be traced again to make sure (the default, `check="first"`, does that, and its
        cost would hide the difference):
        """),
        code("""
        import time

        def twenty_steps(hold):
            net = MLP(2, [16, 16, 1], activation="relu", output_activation="linear", seed=1337)
            net.load_state_dict(model.state_dict())
            net_params = net.parameters()
            obj = BatchObjective(net, "hinge", penalty=lambda: l2_penalty(net_params, 1e-4), check="none")
            opt = SGD(net_params, lr=0.1)
            obj.tape(X, y)  # trace now, so that the clock measures the steps alone

            def steps():
                start = time.perf_counter()
                for _ in range(20):
                    opt.zero_grad()
                    obj(X, y)
                    opt.step()
                return time.perf_counter() - start

            if hold:
                with obj.hold(opt) as held:
                    seconds = steps()
                    print("held:", held.data.shape, "values and", held.grad.shape, "gradients")
            else:
                seconds = steps()
            return [p.data for p in net_params], seconds

        through_values, t_values = twenty_steps(hold=False)
        held_weights, t_held = twenty_steps(hold=True)
        print("the same weights:", held_weights == through_values)
        print(f"20 steps through the Values: {t_values * 1e3:.1f} ms, held as arrays: {t_held * 1e3:.1f} ms")
        """),
        md("""
        The saving is what the Values cost per step; the replay itself (its NumPy work, the
        penalty on the tape included) is the same both ways, so the ratio depends on the model,
        and on how busy the machine is.
        """),
        md("""
        The decision boundary: the model's score on a grid. `trace` records the model once
        (one sample in, one score out) and `tape.forward` replays it on all grid points at once.
        """),
        code("""
        score = trace(lambda x: model(x), [0.0, 0.0], params=params)
        xs, ys = np.meshgrid(np.linspace(-2, 3, 150), np.linspace(-1.5, 2, 110))
        zs = np.asarray(score.forward(np.c_[xs.ravel(), ys.ravel()])).reshape(xs.shape)

        Xa = np.array(X)
        fig, ax = plt.subplots(figsize=(6, 4), dpi=80)
        ax.contourf(xs, ys, zs > 0, cmap="Spectral", alpha=0.8)
        ax.scatter(Xa[:, 0], Xa[:, 1], c=y, s=30, cmap="jet", edgecolors="k", linewidths=0.4)
        ax.set_title("MLP(2, [16, 16, 1]), hinge loss: decision boundary")
        plt.show()
        """),
        md("""
        What does a replay run? The tape groups the recorded operations into **kernels**, one
        NumPy operation for the nodes of one level and one operation: each layer's 16 `linear`
        nodes are one matrix product. `score.kernels()` lists them. `score.program()` shows the
        Python the tape generated from them: each kernel is a line or two of the rule table's
        own array expressions, named after the rule's inputs and the kernel's number (`w1`,
        `x1`, `b1`: kernel 1's weights, inputs and biases, as views of the tape's rows),
        computed straight into the rows of its result (`out=out1`). Relu's row,
        `a if a > 0.0 else 0.0`, is written `maximum(a, 0.0)`, which gives the same numbers.
        The forward pass:
        """),
        code("""
        print(score.kernels())
        print()
        print(score.program("forward"))
        """),
        md("""
        The backward pass runs the same kernels in reverse. Each multiplies the gradient of its
        result (`g5` for kernel 5) by its local derivatives and writes the products into the
        gradient rows of its inputs (`dw5`, `dx5`, `db5`): the chain rule, one layer at a time.
        `W @ X` forward becomes `G @ X^T` for the weights (`group`) and `W^T @ G` for the inputs
        (`sum_over_nodes`), and a bias gets `g` summed over the batch. Relu's derivative,
        `1.0 if a > 0.0 else 0.0`, is the mask `a > 0.0`:
        """),
        code("""
        print(score.program("backward_0"))
        """),
        md("""
        ## 2. Handwritten digits

        1,797 images of 8x8 pixels in [0, 1], split 80 / 20 into training and test sets.
        """),
        code("""
        X_train, y_train, X_test, y_test = load_digits(test_fraction=0.2, seed=0)
        print(len(X_train), "training images,", len(X_test), "test images,", len(X_train[0]), "pixels each")

        fig, axes = plt.subplots(1, 10, figsize=(8, 1.1), dpi=80)
        for ax, image, label in zip(axes, X_train, y_train):
            ax.imshow(np.reshape(image, (8, 8)), cmap="gray_r")
            ax.set_title(label)
            ax.axis("off")
        plt.show()
        """),
        md("""
        `MLP(64, [32, 10])`: 32 ReLU hidden units and 10 linear outputs (logits), trained with
        the cross-entropy loss $\\log \\sum_c e^{z_c} - z_{y}$ by SGD (momentum 0.9) with
        mini-batches of 32. `fit` runs the usual loop: each epoch shuffles the samples and
        splits them into mini-batches, and for each one zeroes the gradients, computes the
        batch loss and its gradient (here by one tape replay) and steps the optimizer. It
        returns the history of every epoch, with the test set evaluated after each.
        """),
        code("""
        digits = MLP(64, [32, 10], activation="relu", output_activation="linear", seed=0)
        print(digits, "with", len(digits.parameters()), "parameters")
        """),
        *_digits_fit_cells(),
        code("""
        epochs = range(1, len(history["loss"]) + 1)
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=80)
        ax1.plot(epochs, history["loss"], label="training")
        ax1.plot(epochs, history["test_loss"], label="test")
        ax1.set_title("cross-entropy loss")
        ax1.set_xlabel("epoch")
        ax1.legend()
        ax2.plot(epochs, history["accuracy"], label="training")
        ax2.plot(epochs, history["test_accuracy"], label="test")
        ax2.set_title("accuracy")
        ax2.set_xlabel("epoch")
        ax2.legend()
        plt.show()
        print(f"final test accuracy: {history['test_accuracy'][-1]:.3f}")
        """),
        md("""
        Some test digits the network gets wrong, with its guess and the true label:
        """),
        code("""
        with no_grad():                                         # predicting needs no graph
            logits = [[z.data for z in digits(x)] for x in X_test]
        predicted = np.argmax(logits, axis=1)                   # the largest logit
        wrong = [i for i, (p, t) in enumerate(zip(predicted, y_test)) if p != t]
        print(f"{len(wrong)} of {len(X_test)} test digits are misclassified")

        fig, axes = plt.subplots(1, 8, figsize=(8, 1.5), dpi=80)
        for ax, i in zip(axes, wrong):
            ax.imshow(np.reshape(X_test[i], (8, 8)), cmap="gray_r")
            ax.set_title(f"{predicted[i]} (is {y_test[i]})", fontsize=9)
            ax.axis("off")
        plt.show()
        """),
        md("""
        That is the whole story of these notebooks: the same chain rule, from one perceptron
        to a digit classifier. Back to the start: `00_quickstart.ipynb`.
        """),
    ]


def _digits_fit_cells() -> list[Cell]:
    """The digits training run: fit with the tape engine."""
    return [
        code("""
        history = fit(
            digits, X_train, y_train,
            loss="cross_entropy",
            optimizer=SGD(digits.parameters(), lr=0.1, momentum=0.9),
            epochs=15, batch_size=32, seed=0,
            X_test=X_test, y_test=y_test,
            engine="tape",      # one tape replay per mini-batch ("scalar": one graph per sample)
            progress=False,
        )
        for epoch in (0, 4, 9, 14):
            print(f"epoch {epoch + 1:>2}: loss {history['loss'][epoch]:.4f}, train accuracy "
                  f"{history['accuracy'][epoch]:.3f}, test accuracy {history['test_accuracy'][epoch]:.3f}")
        """),
    ]


# =================================================================================================
# building and running
# =================================================================================================

# Sections added to the lessons: the articles' checks, MNIST, Adam and the articles' bugs, literally

# =================================================================================================
# 1. seed 004's checks, literally (for 01_perceptrons)
# =================================================================================================


def seed004_checks() -> list[Cell]:
    """Seed 004's 1x9 and 3x9 checks with its printed numbers; grad() vs backward(); seed 000's 1x10."""
    return [
        md(r"""
        ## 4. The articles' own checks, with their printed numbers

        One article (seed 004) checks its formulas against PyTorch and prints the results. It
        draws `w` and `y` at random (`torch.rand`), so its numbers cannot be re-drawn, but the
        check can be rebuilt from what it **prints**: a gradient depends on `w` only through
        the forward value $x \cdot w$. Below, the engine is fed those printed values and its
        gradients are set beside the formula and beside the article's printed rows.

        Both checks use linear units (no activation) and `F.mse_loss`, PyTorch's mean squared
        error, which **averages** over the outputs: for K outputs
        $\mathrm{loss} = \frac1K \sum_k (x \cdot w_k - y_k)^2$, so
        $\partial \mathrm{loss}/\partial w_{ki} = \frac2K (x \cdot w_k - y_k)\, x_i$.
        (The articles' own error $E = \frac12 \sum_k (O_k - t_k)^2$ would give
        $(x \cdot w_k - y_k)\, x_i$ instead.) `tinygrad_bp.losses.mse_loss` has PyTorch's
        meaning.
        """),
        code("""
        import numpy as np

        from tinygrad_bp import Layer, Neuron, grad
        from tinygrad_bp.losses import half_sse, mse_loss


        def show_rows(title, rows):
            print(title)
            for row in rows:
                print("   ", "  ".join(f"{v:9.4f}" for v in row))
        """),
        md(r"""
        ### The 3 x 9 check (three outputs)

        The article: `x = torch.arange(1., 10.).view(1, 9)`, `w = torch.rand(3, 9).requires_grad_()`,
        `y = torch.rand(1, 3) + 18`, `loss = F.mse_loss(y, x @ w.t())` (the arguments in either
        order: the loss is symmetric) and `torch.autograd.grad(loss, w, retain_graph=True)`. It
        prints $x \cdot w$ = [24.4711, 14.6388, 21.9789], y = [18.3916, 18.7910, 18.4638] and
        the gradient rows below. With K = 3, row k is $\frac23 (x \cdot w_k - y_k)\,[1, 2, \dots, 9]$.

        The engine's `Layer(9, 3, activation="linear")` gets weights with exactly the printed
        $x \cdot w$: since $x_0 = 1$, row k is $[x \cdot w_k, 0, \dots, 0]$ (and the biases are 0).
        """),
        code("""
        x = [float(i) for i in range(1, 10)]                      # torch.arange(1., 10.).view(1, 9)
        xw_printed = [24.4711, 14.6388, 21.9789]                  # the article's x @ w.t()
        y_printed = [18.3916, 18.7910, 18.4638]                   # the article's y
        article_rows = [
            [4.0530, 8.1059, 12.1589, 16.2118, 20.2648, 24.3178, 28.3707, 32.4237, 36.4767],
            [-2.7681, -5.5362, -8.3043, -11.0724, -13.8404, -16.6085, -19.3766, -22.1447, -24.9128],
            [2.3434, 4.6868, 7.0302, 9.3737, 11.7171, 14.0605, 16.4039, 18.7473, 21.0907],
        ]

        layer39 = Layer.from_weights([[v] + [0.0] * 8 for v in xw_printed], [0.0] * 3, activation="linear")
        out39 = layer39(x)
        print("x . w =", [round(o.data, 4) for o in out39])
        loss39 = mse_loss(out39, y_printed)                     # (1/3) sum_k (x . w_k - y_k)^2
        weights39 = [w for n in layer39.neurons for w in n.w]

        engine_rows = np.reshape(grad(loss39, weights39), (3, 9))  # as torch.autograd.grad: .grad untouched
        formula_rows = np.array([[2 / 3 * (o - t) * xi for xi in x] for o, t in zip(xw_printed, y_printed)])
        show_rows("engine, d loss / d w (row k = output k):", engine_rows)
        show_rows("formula (2/3)(x . w_k - y_k) x_i:", formula_rows)
        show_rows("the article's printed rows:", article_rows)
        print(f"\\nmax |engine - formula|         = {np.abs(engine_rows - formula_rows).max():.1e}")
        print(f"max |engine - article's rows|  = {np.abs(engine_rows - np.array(article_rows)).max():.1e}")
        """),
        md(r"""
        The engine equals the formula. It differs from the article's rows only in the 4th
        decimal of the larger entries, and only because the article printed $x \cdot w$ and $y$
        to 4 decimals: its rows carry more digits of $x \cdot w_k - y_k$. Read backwards from
        its last column (i = 9, so $36.4767 = \frac23 \cdot 9\,(x \cdot w_0 - y_0)$):
        """),
        code("""
        implied = [row[-1] / (2 / 3 * 9) for row in article_rows]
        printed = [o - t for o, t in zip(xw_printed, y_printed)]
        for k, (a, b) in enumerate(zip(implied, printed)):
            print(f"output {k}: x . w - y implied by the printed gradient {a:.6f}, from the printed forward values {b:.4f}")
        """),
        md(r"""
        The factor $\frac23$ is the mean over three outputs. The articles' error, half the sum
        of squares, gives the plain $(x \cdot w_k - y_k)\, x_i$, so PyTorch's gradient is
        $\frac23$ of the articles'. Both on the same layer:
        """),
        code("""
        layer39.zero_grad()
        half_sse(layer39(x), y_printed).backward()              # E = 1/2 sum_k (x . w_k - y_k)^2
        half_rows = np.reshape([w.grad for w in weights39], (3, 9))
        ratios = np.unique(np.round(engine_rows / half_rows, 12))
        print("mse gradient / half-SSE gradient, every entry:", ", ".join(f"{r:.12f}" for r in ratios))
        layer39.zero_grad()
        """),
        md(r"""
        ### `grad()` and `backward()` give the same numbers

        The article computes the gradient twice: `torch.autograd.grad(loss, [w])`, which
        returns it and leaves `w.grad` alone, and `loss.backward()`, which writes it into
        `w.grad`. `tinygrad_bp.grad(output, inputs)` and `output.backward()` are the same pair.
        On the same graph, `loss39`:
        """),
        code("""
        print("before backward(), .grad is still", {w.grad for w in weights39})
        from_grad = grad(loss39, weights39)
        loss39.backward()
        from_backward = [w.grad for w in weights39]
        print("grad() == backward():", from_grad == from_backward)
        """),
        md(r"""
        ### The 1 x 9 check (one output)

        The article: `x = torch.arange(1., 10.).view(1, 9)` (its comment says "0-9"; it is
        1..9), `w = torch.rand(1, 9)`, printed as
        `[0.1921, 0.1720, 0.9273, 0.5683, 0.8436, 0.1845, 0.4446, 0.1225, 0.0567]`,
        `y = torch.rand(1) + 15` (not printed), `loss = F.mse_loss(y, x @ w.t())`; then
        `torch.autograd.grad(loss, [w])`, `loss.backward(); w.grad`, and a loop printing
        `2 * (x @ w.t() - y) * x[0][i]`, all three giving
        `[0.1385, 0.2769, 0.4154, 0.5538, 0.6923, 0.8307, 0.9692, 1.1077, 1.2461]`.
        (As printed, `w = torch.rand(1, 9)` has no `requires_grad`: the code fails as
        written, see the appendix on the articles' bugs. The printed `w` says
        `requires_grad=True`, so the run that printed it had it.)

        With one output the mean is the sum: $\partial\,\mathrm{loss}/\partial w_i = 2 (x \cdot w - y)\,x_i$.
        The printed row pins $2(x \cdot w - y)$ down to a narrow interval (each entry is
        $i \cdot 2(x \cdot w - y)$ rounded to 4 decimals); y is then $x \cdot w$ minus half of it.
        """),
        code("""
        w_printed = [0.1921, 0.1720, 0.9273, 0.5683, 0.8436, 0.1845, 0.4446, 0.1225, 0.0567]
        row_printed = [0.1385, 0.2769, 0.4154, 0.5538, 0.6923, 0.8307, 0.9692, 1.1077, 1.2461]

        low = max((g - 0.00005) / i for g, i in zip(row_printed, x))
        high = min((g + 0.00005) / i for g, i in zip(row_printed, x))
        slope = (low + high) / 2                                 # 2 (x . w - y)
        xw = sum(wi * xi for wi, xi in zip(w_printed, x))
        y1 = xw - slope / 2
        print(f"2 (x . w - y) lies in [{low:.7f}, {high:.7f}]; x . w = {xw:.4f}, so y = {y1:.5f}")

        neuron19 = Neuron.from_weights(w_printed, 0.0, activation="linear")   # x @ w.t() (bias 0)
        p19 = neuron19(x)
        loss19 = mse_loss(p19, y1)                                # F.mse_loss, one element
        by_grad = grad(loss19, neuron19.w)                        # torch.autograd.grad(loss, [w])
        loss19.backward()                                         # loss.backward(); w.grad
        by_backward = [w.grad for w in neuron19.w]
        by_hand = [2 * (p19.data - y1) * xi for xi in x]          # for i in range(9): 2*(x@w.t()-y)*x[0][i]
        show_rows("grad():", [by_grad])
        show_rows("backward(), w.grad:", [by_backward])
        show_rows("by hand, 2 (x . w - y) x_i:", [by_hand])
        show_rows("the article's printed row:", [row_printed])
        print("\\ngrad() == backward():", by_grad == by_backward,
              "| max |engine - by hand| =", f"{max(abs(a - b) for a, b in zip(by_grad, by_hand)):.1e}",
              "| rounded to 4 decimals, the article's row:", [round(g, 4) for g in by_grad] == row_printed)
        """),
        md(r"""
        ### And the sigmoid checks as another article writes them (seed 000)

        Seed 000 checks one sigmoid output with `x = torch.randn(1, 10)`,
        `w = torch.randn(1, 10, requires_grad=True)`, no bias, `o = torch.sigmoid(x @ w.t())`,
        `loss = F.mse_loss(torch.ones(1, 1), o)`, `loss.backward()` (it prints no numbers). The
        target is 1, the mean is over one element, so $\partial\,\mathrm{loss}/\partial w_j =
        2 (O - 1)\,O(1 - O)\,x_j$: twice the delta rule. Its 2 x 10 version averages over two
        outputs, and the $\frac22$ cancels the 2: the framework's gradient is then exactly the
        articles' $(O_k - 1)\,O_k(1 - O_k)\,x_j$.
        """),
        code("""
        rs = np.random.default_rng(0)
        x10 = rs.standard_normal(10).tolist()                     # torch.randn(1, 10)
        for n_out in (1, 2):
            W = rs.standard_normal((n_out, 10)).tolist()          # torch.randn(n_out, 10)
            layer10 = Layer.from_weights(W, [0.0] * n_out, activation="sigmoid")
            O = layer10(x10)
            mse_loss(O, [1.0] * n_out).backward()                 # F.mse_loss(torch.ones(1, n_out), o)
            engine = np.array([[w.grad for w in n.w] for n in layer10.neurons])
            factor = 2 / n_out
            formula = np.array([[factor * (o.data - 1) * o.data * (1 - o.data) * xj for xj in x10] for o in O])
            print(f"{n_out} x 10: factor 2/{n_out} = {factor:g}, max |engine - formula| = "
                  f"{np.abs(engine - formula).max():.1e}")
        """),
    ]


# =================================================================================================
# 2. seed 002's MNIST recipe, honestly (for 03_minibatch_network or 05_training)
# =================================================================================================


def mnist_honestly() -> list[Cell]:
    """Network([64, 30, 1]) trained and scored as seed 002 writes it; why it fails; the fix."""
    return [
        md(r"""
        ## The articles' MNIST recipe, exactly as written

        Seed 002 ends with `net = Network([784, 30, 1])`, `net.SGD(td, 30, 10, 3.0, tt_d)`: **one**
        sigmoid output for ten digits, trained on pairs `(x, [y])` whose target `y` is the digit
        itself (a number 0..9), 30 epochs, mini-batches of 10, $\eta = 3.0$. Its `evaluate`
        scores an image as right when that one output is within 0.001 of the label:

            test_results = [(self.feedforward(x), y) for x, y in test_data]
            return sum(int(compare_float(x, y, 0.001)) for x, y in test_results)

        with `compare_float(a, b, precision)` = 1 if `abs(a - b) < precision` else 0. (A
        commented-out line above it, `np.argmax(self.feedforward(x), y)`, would use the argmax.)

        Here the same recipe runs on scikit-learn's 8 x 8 digits instead of MNIST, so
        `Network([64, 30, 1])`, with the engine's correct gradient of
        $C = \frac12 (\hat y - y)^2$. `Network.SGD` trains through `tinygrad_bp.train.fit` with
        its default `engine="auto"`: **the tape**, one recorded per-sample graph replayed over
        each mini-batch with NumPy (the same numbers as one graph per sample, up to rounding).
        The scalar engine takes about 3 s an epoch here, a minute and a half for the 30
        epochs; the tape a few seconds.
        """),
        code("""
        import random
        from collections import Counter

        import numpy as np

        from tinygrad_bp import no_grad
        from tinygrad_bp.data import load_digits
        from tinygrad_bp.train import Network

        X_tr, y_tr, X_te, y_te = load_digits()       # 1438 training and 359 test images, pixels in [0, 1]
        training_data = list(zip(X_tr, y_tr))        # (x, y), y the digit itself, as the article's td
        test_data = list(zip(X_te, y_te))
        print("test labels:", dict(sorted(Counter(y_te).items())))


        def compare_float(a, b, precision):          # the article's, verbatim
            if abs(a - b) < precision:
                return 1
            return 0


        def article_evaluate(net, test_data):        # the article's evaluate, on the engine's network
            with no_grad():
                test_results = [(net.feedforward(x).data, y) for x, y in test_data]
            return sum(int(compare_float(x, y, 0.001)) for x, y in test_results)
        """),
        code("""
        net1 = Network([64, 30, 1], seed=0)
        history1 = net1.SGD(training_data, 30, 10, 3.0, seed=0)   # epochs, mini_batch_size, eta
        print(f"Network([64, 30, 1]) after 30 epochs, scored as the article does: "
              f"{article_evaluate(net1, test_data)} / {len(test_data)}")

        with no_grad():
            outputs1 = [net1(x).data for x in X_te]
        right = Counter(y for o, y in zip(outputs1, y_te) if compare_float(o, y, 0.001))
        print("the images it gets 'right' are labelled:", dict(right), "| 1s in the test set:", y_te.count(1))
        print(f"its output over the whole test set: from {min(outputs1):.12f} to {max(outputs1):.12f}")
        floor = 0.5 * np.mean((1 - np.array(y_tr, dtype=float)) ** 2)
        print(f"training loss in the last epoch {history1['loss'][-1]:.6f}; "
              f"with every output 1 it would be 1/2 mean (1 - y)^2 = {floor:.6f}")
        """),
        md(r"""
        **41 of 359 (11%), and they are exactly the 41 ones.** The network answers "1"
        (0.99999999998 or so) for every image, and `compare_float` counts the images
        labelled 1. Why one output cannot classify ten digits:

        * A sigmoid output lies in (0, 1). It can come within 0.001 of the label only for a 0
          (output below 0.001) or a 1 (above 0.999): **the digits 2 to 9 can never be scored
          right**, so even a perfect network would reach at most 38 + 41 = 79 of these 359.
        * For the 8 classes whose target is above 1, $\frac12(\hat y - y)^2$ always pushes the
          output up; with $\eta = 3$ the output unit saturates, $s'(z) \approx 10^{-11}$, and the
          gradient vanishes: nothing, not even a 0, can pull it back. The training loss sits
          at the value of "always 1" above.
        * Even a linear output regressing the label would not help: one number puts the
          classes on a line, so squared error calls a 7 read as 8 a small mistake and a 7 read
          as 1 a big one, although 7 and 1 look alike; and "within 0.001 of the label" asks for
          the exact integer. And the argmax of the article's commented-out line (with its
          bracket put right, `(np.argmax(self.feedforward(x)), y)`) is always 0 for a single
          output: that score would count the zeros.

        Classification needs **one output per class**: ten sigmoid units, a one-hot target (1
        for the right digit, 0 for the other nine), and the prediction is the largest output,
        the argmax.

        ### What the article's code does as written

        The article's code has two more bugs (the appendix on its bugs runs each): the weight
        gradients are summed with `zip(nablea_w, nablea_w)`, so **the weights never change**,
        and `cost_derivative` returns $\hat y$ instead of $\hat y - y$, so the biases are trained
        to drive **every output to 0**, whatever the label. Its code, transcribed line by line
        into NumPy (no engine), with `random` and `np.random` seeded:
        """),
        code("""
        def sigmoid(x):
            return 1.0 / (1.0 + np.exp(-x))


        def sigmoid_prime(x):
            return sigmoid(x) * (1 - sigmoid(x))


        class ArticleNetwork(object):                # seed 002's Network, line by line
            def __init__(self, sizes):
                self.num_layers = len(sizes)
                self.sizes = sizes
                self.biases = [np.random.randn(y, 1) for y in sizes[1:]]
                self.weights = [np.random.randn(y, x) for x, y in zip(sizes[:-1], sizes[1:])]

            def feedforward(self, x):
                a = np.array(x).reshape(len(x), 1)
                for b, w in zip(self.biases, self.weights):
                    a = sigmoid(np.dot(w, a) + b)
                return a

            def SGD(self, training_data, epochs, mini_batch_size, eta, test_data=None):
                if test_data:
                    n_test = len(test_data)
                n = len(training_data)
                for j in range(epochs):
                    random.shuffle(training_data)
                    mini_batchs = [training_data[k:k + mini_batch_size] for k in range(0, n, mini_batch_size)]
                    for mini_batch in mini_batchs:
                        self.update_mini_batch(mini_batch, eta)
                    if test_data:
                        print("Epoch {0}:{1}/{2}".format(j, self.evaluate(test_data), n_test))
                    else:
                        print("Epoch {0} complete.".format(j))

            def update_mini_batch(self, mini_batch, eta):
                nabla_b = [np.zeros(b.shape) for b in self.biases]
                nablea_w = [np.zeros(w.shape) for w in self.weights]
                for x, y in mini_batch:
                    delta_nabla_b, delta_nable_w = self.backprob(x, y)
                    nabla_b = [nb + dnb for nb, dnb in zip(nabla_b, delta_nabla_b)]
                    nablea_w = [nw + dnw for nw, dnw in zip(nablea_w, nablea_w)]          # (sic)
                self.weights = [w - (eta / len(mini_batch)) * nw for w, nw in zip(self.weights, nablea_w)]
                self.biases = [b - (eta / len(mini_batch)) * nb for b, nb in zip(self.biases, nabla_b)]

            def backprob(self, a, b):
                nabla_b = [np.zeros(b.shape) for b in self.biases]
                nabla_w = [np.zeros(w.shape) for w in self.weights]
                x = np.array(a).reshape(len(a), 1)
                y = np.array(b).reshape(len(b), 1)
                activation = x
                activations = [x]
                zs = []
                for b, w in zip(self.biases, self.weights):
                    z = np.dot(w, activation) + b
                    zs.append(z)
                    activation = sigmoid(z)
                    activations.append(activation)
                delta = self.cost_derivative(activations[-1], y) * sigmoid_prime(zs[-1])
                nabla_b[-1] = delta
                nabla_w[-1] = np.dot(delta, activations[-2].transpose())
                for l in range(2, self.num_layers):
                    z = zs[-l]
                    sp = sigmoid_prime(z)
                    delta = np.dot(self.weights[-l + 1].transpose(), delta) * sp
                    nabla_b[-l] = delta
                    nabla_w[-l] = np.dot(delta, activations[-l - 1].transpose())
                return (nabla_b, nabla_w)

            def evaluate(self, test_data):
                test_results = [(self.feedforward(x), y) for x, y in test_data]
                return sum(int(compare_float(x, y, 0.001)) for x, y in test_results)

            def cost_derivative(self, output_activations, y):
                return (output_activations)                                             # (sic)


        random.seed(0)
        np.random.seed(0)
        article_net = ArticleNetwork([64, 30, 1])
        weights_before = [w.copy() for w in article_net.weights]
        td = [(np.array(x), [np.array(y)]) for x, y in zip(X_tr, y_tr)]      # as the article builds td, tt_d
        tt_d = [(np.array(x), [np.array(y)]) for x, y in zip(X_te, y_te)]
        article_net.SGD(td, 30, 10, 3.0, tt_d)
        """),
        code("""
        outputs_a = np.array([article_net.feedforward(x)[0, 0] for x, _ in tt_d])
        print("weights changed by training:", any((w != w0).any() for w, w0 in zip(article_net.weights, weights_before)))
        print(f"outputs over the test set: from {outputs_a.min():.5f} to {outputs_a.max():.5f}")
        print("the images scored right are labelled:",
              dict(Counter(y for o, y in zip(outputs_a, y_te) if compare_float(o, y, 0.001))),
              "| 0s in the test set:", y_te.count(0))
        """),
        md(r"""
        As written, the code outputs nearly 0 for everything (between 0.0001 and 0.03) and
        "gets right" the zeros whose output fell below 0.001: 37 of the 38, about one image in
        ten. The article reports that the accuracy
        "stabilised at 98%" (its output is a picture, not in the text). On MNIST's 10,000 test
        images, 980 of which are zeros, this code prints at best `Epoch 29:980/10000`: quite
        possibly the "98%" (it is 9.8%).

        ### The fix: ten outputs, one-hot targets, argmax

        `Network([64, 30, 10])`, the same 30 epochs, mini-batch 10 and $\eta = 3.0$, each target
        a one-hot list, each image scored by its largest output (the article's commented-out
        argmax line, with its bracket in the right place).
        """),
        code("""
        def one_hot(t):
            return [1.0 if k == t else 0.0 for k in range(10)]


        def argmax_evaluate(net, test_data):         # sum(int(np.argmax(net.feedforward(x)) == y) ...)
            with no_grad():
                return sum(int(np.argmax([o.data for o in net.feedforward(x)]) == y) for x, y in test_data)


        net10 = Network([64, 30, 10], seed=0)
        history10 = net10.SGD([(x, one_hot(y)) for x, y in training_data], 30, 10, 3.0, test_data, seed=0)
        for epoch in (1, 5, 10, 20, 30):
            print(f"epoch {epoch:>2}: {round(history10['test_accuracy'][epoch - 1] * len(test_data))} / {len(test_data)}")
        print(f"Network([64, 30, 10]) after 30 epochs: {argmax_evaluate(net10, test_data)} / {len(test_data)} right")
        """),
    ]


# =================================================================================================
# 3. Adam written out; the article's log, float32 vs float64 (for 04_himmelblau_adam)
# =================================================================================================


def adam_explained() -> list[Cell]:
    """Adam's update as a 10-line function beside tinygrad_bp.optim.Adam; the article's float32 log."""
    return [
        md(r"""
        ## Adam, written out

        For each parameter p with gradient g at step t = 1, 2, ... (lr = 1e-3, $\beta_1$ = 0.9,
        $\beta_2$ = 0.999, $\varepsilon$ = 1e-8):

        $$m_t = \beta_1 m_{t-1} + (1 - \beta_1)\, g \qquad v_t = \beta_2 v_{t-1} + (1 - \beta_2)\, g^2$$
        $$\hat m_t = \frac{m_t}{1 - \beta_1^t} \qquad \hat v_t = \frac{v_t}{1 - \beta_2^t} \qquad
          p \leftarrow p - \mathrm{lr}\, \frac{\hat m_t}{\sqrt{\hat v_t} + \varepsilon}$$

        $m$ is a running mean of the gradient, $v$ of its square; both start at 0, and the
        bias corrections $1 - \beta^t$ undo that start (at t = 1, $\hat m = g$ and
        $\hat v = g^2$, so the first step is lr times the sign of g). In pure Python, beside
        `tinygrad_bp.optim.Adam`, both fed the engine's gradient of Himmelblau's function,
        from (0, 0):
        """),
        code("""
        import math

        from tinygrad_bp import Adam, Value


        def adam_update(p, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            m_hat = m / (1 - b1**t)
            v_hat = v / (1 - b2**t)
            p = p - lr * m_hat / (math.sqrt(v_hat) + eps)
            return p, m, v


        def himmelblau_xy(x, y):
            return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2


        def engine_gradient(point):
            x, y = Value(point[0]), Value(point[1])
            himmelblau_xy(x, y).backward()
            return [x.grad, y.grad]


        def run_by_hand(update, steps):
            p, m, v = [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]
            path = []
            for t in range(1, steps + 1):
                g = engine_gradient(p)
                for i in range(2):
                    p[i], m[i], v[i] = update(p[i], g[i], m[i], v[i], t)
                path.append(tuple(p))
            return path


        # tinygrad_bp.optim.Adam, the loop of the article (and of PyTorch)
        xa, ya = Value(0.0), Value(0.0)
        adam = Adam([xa, ya], lr=1e-3)
        engine_path, engine_f = [], []
        for step in range(20_000):
            adam.zero_grad()
            fa = himmelblau_xy(xa, ya)
            fa.backward()
            adam.step()
            engine_path.append((xa.data, ya.data))
            engine_f.append(fa.data)                 # f before this step, as the article prints it

        hand_path = run_by_hand(adam_update, 20_000)
        diffs = [max(abs(a - b) for a, b in zip(p, q)) for p, q in zip(hand_path, engine_path)]
        print("after 20,000 steps: by hand", hand_path[-1], "| tinygrad_bp.optim.Adam", engine_path[-1])
        print(f"largest difference anywhere on the way: {max(diffs):.1e} "
              f"(at {sum(d > 0 for d in diffs)} of the 20,000 steps the last bit differs)")
        """),
        md(r"""
        The same trajectory, to the last bit or two: the two compute the same formula in a
        different order. `tinygrad_bp.optim.Adam` (like PyTorch) writes $m$'s update as
        $m + (1 - \beta_1)(g - m)$, and folds the bias corrections into the step:
        $p \leftarrow p + \frac{-\mathrm{lr}/(1 - \beta_1^t) \cdot m}
        {\sqrt{v}/\sqrt{1 - \beta_2^t} + \varepsilon}$, algebraically the same thing. Floats
        round after every operation, so a different order can move the last bit. Written in
        that order, the 10-line function gives the engine's trajectory bit for bit:
        """),
        code("""
        def adam_update_in_engine_order(p, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
            m = m + (1 - b1) * (g - m)
            v = v * b2 + (1 - b2) * g * g
            step_size = lr / (1 - b1**t)
            denom = math.sqrt(v) / (1 - b2**t) ** 0.5 + eps
            p = p + (-step_size * m) / denom
            return p, m, v


        same_order_path = run_by_hand(adam_update_in_engine_order, 20_000)
        print("identical to tinygrad_bp.optim.Adam at every one of the 20,000 steps:", same_order_path == engine_path)
        """),
        md(r"""
        ### The article's log, in float32, beside float64

        The article runs the same loop with `torch.optim.Adam` on a float32 tensor and prints
        every 2,000 steps (seed 004). Its loop computes `pred = f(x)` **before** the step and
        prints `x` **after** it, so the line "step s" shows x after s + 1 steps and f at x after
        s steps (at step 0: x = 0.001 after one step, f(0, 0) = 170). The engine's column below
        is read the same way. The middle column is the article's code run here with
        torch 2.13 (float32, as in the article; 18,001 steps, enough for every printed line;
        `foreach=False` is PyTorch's default on a CPU, written out because it saves a check
        at every step).
        """),
        code("""
        article_log = {                              # seed 004, as printed: step: (x, y, f(x))
            0: ("0.0009999999310821295", "0.0009999999310821295", "170.0"),
            2000: ("2.3331806659698486", "1.9540694952011108", "13.730916023254395"),
            4000: ("2.9820079803466797", "2.0270984172821045", "0.014858869835734367"),
            6000: ("2.999983549118042", "2.0000221729278564", "1.1074007488787174e-08"),
            8000: ("2.9999938011169434", "2.0000083446502686", "1.5572823031106964e-09"),
            10000: ("2.999997854232788", "2.000002861022949", "1.8189894035458565e-10"),
            12000: ("2.9999992847442627", "2.0000009536743164", "1.6370904631912708e-11"),
            14000: ("2.999999761581421", "2.000000238418579", "1.8189894035458565e-12"),
            16000: ("3.0", "2.0", "0.0"),
            18000: ("3.0", "2.0", "0.0"),
        }

        try:
            import torch
        except ImportError:                          # torch is optional: pip install 'tinygrad_bp[torch]'
            torch = None
            print("PyTorch is not installed: the float32 column stays empty")

        torch_log, torch_moves = {}, [0] * 9
        if torch is not None:
            def f(x):                                # the article's code from here on
                return (x[0] ** 2 + x[1] - 11) ** 2 + (x[0] + x[1] ** 2 - 7) ** 2

            x = torch.tensor([0., 0.], requires_grad=True)
            optimizer = torch.optim.Adam([x], lr=1e-3, foreach=False)   # foreach=False: the default on a CPU
            torch_path = [(0.0, 0.0)]                                    # (added: every point, to count moves)
            for step in range(18001):
                pred = f(x)
                optimizer.zero_grad()
                pred.backward()
                optimizer.step()
                if step % 2000 == 0:
                    torch_log[step] = (*x.tolist(), pred.item())
                torch_path.append(tuple(x.tolist()))                     # (added)
        """),
        code("""
        print(f"{'step':>5}  {'':1}  {'the article (float32)':<24}{'torch float32, here':<24}{'engine (float64)':<24}")
        for step, printed in article_log.items():
            engine = (*engine_path[step], engine_f[step])
            here = torch_log.get(step, ("",) * 3)
            for name, a, t, e in zip("xyf", printed, here, engine):
                mark = "" if t == "" or float(a) == t else "  <- differs"
                print(f"{step if name == 'x' else '':>5}  {name}  {a:<24}{str(t):<24}{e!r:<24}{mark}")


        def moves(path):                             # path[0] is the start, path[s + 1] the point after step s
            per_2000 = [0] * 9
            for s in range(18001):
                per_2000[min(s // 2000, 8)] += path[s + 1] != path[s]
            first_lost = next(s for s in range(18001) if path[s + 1] == path[s])
            last_move = max(s for s in range(18001) if path[s + 1] != path[s])
            away = max(abs(path[first_lost][0] - 3.0), abs(path[first_lost][1] - 2.0))
            return f"{per_2000}; the first step lost: {first_lost}, {away:.0e} from (3, 2); the last move: {last_move}"


        print("\\nsteps that change x or y, in each 2,000:")
        if torch is not None:
            print("  float32 (torch): ", moves(torch_path))
        print("  float64 (engine):", moves([(0.0, 0.0), *engine_path]))
        """),
        md(r"""
        From step 4,000 on, the article's float32 log and the float32 run here agree to every
        printed digit. At step 2,000 x differs by two float32 spacings (2 x 2.4e-7; the run is
        still moving fast there, f = 13.7) while y agrees: another PyTorch version (the
        article's prints `MmBackward`, today's `MmBackward0`) rounds an operation or two
        differently. Between float32 and float64 the gap is far larger, and its cause is
        rounding:

        * **On the way**, every float32 operation keeps about 7 significant digits, and over
          2,000 steps the two runs drift about 2e-6 apart. The same PyTorch code in float64
          lands on the engine's numbers (below: 4e-16 apart at step 2,000).
        * **Near the minimum, rounding throws Adam's steps away.** Adam's step there is tiny
          ($v$ still remembers the large early gradients, so $\hat m/\sqrt{\hat v}$ is small).
          When it is less than half the spacing of the numbers around x (in float32 1.2e-7
          or 2.4e-7 near 2 and 3), x + step rounds back to x and the step is lost. The counts above show
          it: float32 starts losing steps at step 5,869, still 2e-5 from (3, 2), and after that
          moves only now and then, by one spacing. float64 loses its steps the same way, but
          its spacing is $2^{29}$ times finer: only from step 7,831, 1e-14 from the minimum. So
          at step 8,000 float64 is at f = 4e-27 and float32 at 1.6e-9.
        * **And float32 cannot compute f there.** Its brackets $x^2 + y - 11$ and
          $x + y^2 - 7$ subtract numbers near 11 and near 7, which float32 holds only to whole
          multiples of $2^{-20} \approx 9.5 \cdot 10^{-7}$ and $2^{-21}$; so its f is a sum of
          squares of such multiples (at step 14,000, $2^{-39} = 2 \cdot (2^{-20})^2$ exactly),
          while float64, at the very same x, gives the true f. Both runs end exactly on (3, 2),
          a point each type holds exactly.
        """),
        code("""
        import numpy as np


        def f_in(dtype, x, y):
            x, y = dtype(x), dtype(y)
            a, b = x * x + y - dtype(11), x + y * y - dtype(7)
            return a * a + b * b, a, b


        print(f"{'step':>5}  {'f in float32':<24}{'f in float64':<14}{'brackets in float32 / 2^-20, 2^-21'}")
        for step in (8000, 10000, 12000, 14000):
            x32, y32 = (float(s) for s in article_log[step][:2])
            f32, a32, b32 = f_in(np.float32, x32, y32)
            f64, _, _ = f_in(np.float64, x32, y32)
            print(f"{step:>5}  {float(f32)!r:<24}{float(f64):<14.6e}{float(a32) / 2**-20:g}, {float(b32) / 2**-21:g}")

        if torch is not None:                        # the same code in float64: the engine's numbers
            x = torch.tensor([0., 0.], dtype=torch.float64, requires_grad=True)
            optimizer = torch.optim.Adam([x], lr=1e-3, foreach=False)
            for step in range(2001):
                pred = f(x)
                optimizer.zero_grad()
                pred.backward()
                optimizer.step()
            x64 = x.tolist()
            gap64 = max(abs(a - b) for a, b in zip(x64, engine_path[2000]))
            gap32 = max(abs(a - b) for a, b in zip(torch_log[2000][:2], engine_path[2000]))
            print(f"\\nstep 2000, |engine - torch float64| = {gap64:.1e}, |engine - torch float32| = {gap32:.1e}")
        """),
    ]


# =================================================================================================
# 4. The articles' bugs, each run where it occurs (a notebook or an appendix)
# =================================================================================================


def article_bugs() -> list[Cell]:
    """Every bug of the articles' code, run: what the code does and what it should do."""
    return [
        md(r"""
        # The bugs in the articles' code

        The project follows five short articles (seeds 000 - 004). Their code has a few bugs;
        none is copied into tinygrad_bp, and each is run here where it occurs, beside what it
        should do.

        1. seed 002, `update_mini_batch`: `zip(nablea_w, nablea_w)`, so the weights never train;
        2. seed 002, `cost_derivative` returns $\hat y$ instead of $\hat y - y$;
        3. seed 004, `w = torch.rand(1, 9)` without `requires_grad`: `torch.autograd.grad` raises;
        4. seed 004, `fig.gca(projection='3d')`: a TypeError on current matplotlib;
        5. two typos: seed 003 writes $\partial i_2/\partial o_2 = w_2$ for
           $\partial i_2/\partial o_1 = W_2$, and seed 001 prints out_o1 = 0.75136079 for 0.75136507.
        """),
        code("""
        import random
        import warnings

        import numpy as np

        from tinygrad_bp import MLP, SGD, Value, grad, linear
        from tinygrad_bp.data import make_moons
        from tinygrad_bp.losses import half_sse


        def sigmoid(x):
            return 1.0 / (1.0 + np.exp(-x))


        def sigmoid_prime(x):
            return sigmoid(x) * (1 - sigmoid(x))
        """),
        md(r"""
        ## 1. `zip(nablea_w, nablea_w)`: the weights never change

        Seed 002's `update_mini_batch` sums each sample's gradients into `nabla_b` and `nablea_w`:

            delta_nabla_b, delta_nable_w = self.backprob(x, y)
            nabla_b = [nb + dnb for nb, dnb in zip(nabla_b, delta_nabla_b)]
            nablea_w = [nw + dnw for nw, dnw in zip(nablea_w, nablea_w)]

        The last line zips `nablea_w` with **itself**: it adds the running sum to itself, and
        a sum that starts at zeros stays zeros. The sample's weight gradient,
        `delta_nable_w` (spelled differently from everything else), is never used. So
        $w \leftarrow w - \frac{\eta}{m} \cdot 0$: only the biases train. The article's
        `update_mini_batch` and `backprob` for its `Network([2, 3, 1])`, transcribed into
        NumPy, with both bugs as switches (`zip_bug`, and `cost_bug` for bug 2), on one
        mini-batch of 10 points:
        """),
        code("""
        def backprob(weights, biases, x, y, cost_bug):
            nabla_b = [np.zeros(b.shape) for b in biases]
            nabla_w = [np.zeros(w.shape) for w in weights]
            activation = np.array(x).reshape(len(x), 1)
            y = np.array(y).reshape(len(y), 1)
            activations, zs = [activation], []
            for b, w in zip(biases, weights):
                z = np.dot(w, activation) + b
                zs.append(z)
                activation = sigmoid(z)
                activations.append(activation)
            cost_derivative = activations[-1] if cost_bug else activations[-1] - y    # the article: y_hat
            delta = cost_derivative * sigmoid_prime(zs[-1])
            nabla_b[-1] = delta
            nabla_w[-1] = np.dot(delta, activations[-2].transpose())
            for l in range(2, len(weights) + 1):
                delta = np.dot(weights[-l + 1].transpose(), delta) * sigmoid_prime(zs[-l])
                nabla_b[-l] = delta
                nabla_w[-l] = np.dot(delta, activations[-l - 1].transpose())
            return nabla_b, nabla_w


        def update_mini_batch(weights, biases, mini_batch, eta, zip_bug, cost_bug):
            nabla_b = [np.zeros(b.shape) for b in biases]
            nablea_w = [np.zeros(w.shape) for w in weights]
            for x, y in mini_batch:
                delta_nabla_b, delta_nable_w = backprob(weights, biases, x, y, cost_bug)
                nabla_b = [nb + dnb for nb, dnb in zip(nabla_b, delta_nabla_b)]
                if zip_bug:
                    nablea_w = [nw + dnw for nw, dnw in zip(nablea_w, nablea_w)]        # the article
                else:
                    nablea_w = [nw + dnw for nw, dnw in zip(nablea_w, delta_nable_w)]   # meant
            weights = [w - (eta / len(mini_batch)) * nw for w, nw in zip(weights, nablea_w)]
            biases = [b - (eta / len(mini_batch)) * nb for b, nb in zip(biases, nabla_b)]
            return weights, biases


        rs = np.random.RandomState(0)
        W0 = [rs.randn(3, 2), rs.randn(1, 3)]                  # np.random.randn(y, x), sizes [2, 3, 1]
        B0 = [rs.randn(3, 1), rs.randn(1, 1)]
        X_mb, y_mb = make_moons(10, noise=0.1, seed=0)
        mini_batch = [(x, [y]) for x, y in zip(X_mb, y_mb)]

        for zip_bug in (True, False):
            W1, B1 = update_mini_batch(W0, B0, mini_batch, 3.0, zip_bug=zip_bug, cost_bug=False)
            moved_w = max(np.abs(a - b).max() for a, b in zip(W1, W0))
            moved_b = max(np.abs(a - b).max() for a, b in zip(B1, B0))
            print(f"zip({'nablea_w, nablea_w' if zip_bug else 'nablea_w, delta_nable_w'}): "
                  f"the weights move by up to {moved_w:.4f}, the biases by up to {moved_b:.4f}")
        """),
        md(r"""
        With the line fixed (and bug 2 fixed too) the article's update is one step of plain
        gradient descent on the mini-batch mean of $\frac12 (\hat y - y)^2$, which is exactly
        what the engine computes from the same starting network:
        """),
        code("""
        def article_start():                         # the engine's copy of the starting network W0, B0
            return MLP.from_weights([w.tolist() for w in W0], [b.ravel().tolist() for b in B0],
                                    activation="sigmoid", output_activation="sigmoid")


        W_fixed, B_fixed = update_mini_batch(W0, B0, mini_batch, 3.0, zip_bug=False, cost_bug=False)

        net = article_start()
        optimizer = SGD(net.parameters(), lr=3.0)
        optimizer.zero_grad()
        for x, (y,) in mini_batch:
            half_sse([net(x)], [y]).backward(1 / len(mini_batch))   # the mean over the mini-batch
        optimizer.step()
        engine_W = [np.array([[w.data for w in n.w] for n in layer.neurons]) for layer in net.layers]
        engine_B = [np.array([[n.b.data] for n in layer.neurons]) for layer in net.layers]
        gap = max(np.abs(a - b).max() for a, b in zip(W_fixed + B_fixed, engine_W + engine_B))
        print(f"fixed article code vs the engine after one step: max |difference| = {gap:.1e}")
        """),
        md(r"""
        ## 2. `cost_derivative` returns $\hat y$, not $\hat y - y$

        The article writes the loss $\frac12(\hat y - y)^2$ and its derivative $\hat y - y$
        in the text, then codes

            def cost_derivative(self, output_activations, y):
                return (output_activations)

        $\hat y$ is the derivative of $\frac12 \hat y^2$: the loss of a target that is **always
        0**. The label no longer enters the gradient at all. The engine shows it: the buggy
        backpropagation equals the engine's gradient of `half_sse(y_hat, 0.0)`, for any label.
        """),
        code("""
        def as_engine_order(nabla_b, nabla_w):       # neuron by neuron: its weights, then its bias
            return np.array([g for nb, nw in zip(nabla_b, nabla_w) for j in range(len(nb))
                             for g in [*nw[j], nb[j, 0]]])


        def engine_gradient(x, target):
            net = article_start()
            half_sse([net(x)], [target]).backward()
            return np.array([p.grad for p in net.parameters()])


        x0 = X_mb[0]
        for label in (0.0, 1.0):
            bug = as_engine_order(*backprob(W0, B0, x0, [label], cost_bug=True))
            ok = as_engine_order(*backprob(W0, B0, x0, [label], cost_bug=False))
            print(f"label {label:g}: d/d(output layer w, b), the article's code {np.round(bug[-4:], 6)}, "
                  f"correct {np.round(ok[-4:], 6)}")
            print(f"         all 13 gradients: the article's = engine's with target 0: "
                  f"{np.abs(bug - engine_gradient(x0, 0.0)).max() < 1e-15}; "
                  f"correct = engine's with target {label:g}: {np.abs(ok - engine_gradient(x0, label)).max() < 1e-15}")
        """),
        md(r"""
        (For label 0 the two agree: $\hat y - 0 = \hat y$.) Trained so, every output is driven
        towards 0. Together with bug 1 (only the biases move) that is what the article's MNIST
        run does: the section "The articles' MNIST recipe, exactly as written" runs the
        article's whole code on the digits.

        ## 3. `w = torch.rand(1, 9)` without `requires_grad`

        Seed 004's single-output check, as written:

            x = torch.arange(1., 10.).view(1, 9)
            w = torch.rand(1, 9)
            y = torch.rand(1) + 15
            loss = F.mse_loss(y, x @ w.t())
            torch.autograd.grad(loss, [w])

        Nothing in that graph requires a gradient, so PyTorch has recorded no graph and
        `autograd.grad` (and `loss.backward()`) raise. The fix is
        `w = torch.rand(1, 9, requires_grad=True)` (the `w` the article prints does say
        `requires_grad=True`). Below with the article's printed `w`, and `y` rebuilt from its
        printed gradient as in `01_perceptrons.ipynb`. (`y` has shape (1,) and `x @ w.t()`
        (1, 1): PyTorch warns about the broadcast, harmless with one element.)
        """),
        code("""
        try:
            import torch
            import torch.nn.functional as F
        except ImportError:                          # torch is optional: pip install 'tinygrad_bp[torch]'
            torch = None
            print("PyTorch is not installed: this check is skipped")

        if torch is not None:
            x = torch.arange(1., 10.).view(1, 9)
            y = torch.tensor([15.449471354])         # torch.rand(1) + 15, rebuilt from the printed gradient
            w = torch.tensor([[0.1921, 0.1720, 0.9273, 0.5683, 0.8436, 0.1845, 0.4446, 0.1225, 0.0567]])
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                loss = F.mse_loss(y, x @ w.t())
                try:
                    torch.autograd.grad(loss, [w])
                except RuntimeError as error:
                    print("as written:   RuntimeError:", error)

                w.requires_grad_()                   # the fix: torch.rand(1, 9, requires_grad=True)
                loss = F.mse_loss(y, x @ w.t())
                (dw,) = torch.autograd.grad(loss, [w])
            print("fixed:        ", [round(g, 4) for g in dw[0].tolist()])
            print("the article's: [0.1385, 0.2769, 0.4154, 0.5538, 0.6923, 0.8307, 0.9692, 1.1077, 1.2461]")
            print("PyTorch's warning:", caught[0].message if caught else "none")
        """),
        md(r"""
        tinygrad_bp has the same rule: a `Value(..., requires_grad=False)` is a constant, and
        asking `grad()` for its derivative is an error that says so:
        """),
        code("""
        w_const = Value(0.5, label="w", requires_grad=False)
        loss_c = (w_const * 3.0 - 1.0) ** 2
        try:
            grad(loss_c, [w_const])
        except ValueError as error:
            print("ValueError:", error)
        """),
        md(r"""
        ## 4. `fig.gca(projection='3d')`

        Seed 004 draws Himmelblau's surface with `ax = fig.gca(projection = '3d')`. `gca()`
        took keyword arguments until matplotlib 3.4, deprecated them, and has refused them since
        3.6. The fix is `ax = fig.add_subplot(projection='3d')` (and
        `from mpl_toolkits.mplot3d import Axes3D` is no longer needed). The rest is the
        article's code, with a smaller figure:
        """),
        code("""
        import matplotlib
        import matplotlib.pyplot as plt


        def f(x):
            return (x[0] ** 2 + x[1] - 11) ** 2 + (x[0] + x[1] ** 2 - 7) ** 2


        x = np.arange(-6, 6, 0.1)
        y = np.arange(-6, 6, 0.1)
        X, Y = np.meshgrid(x, y)
        Z = f([X, Y])
        fig = plt.figure(figsize=(4.5, 4.5), dpi=70, num="Test_Function", frameon=True, facecolor="white")
        try:
            ax = fig.gca(projection="3d")            # the article
        except TypeError as error:
            print(f"matplotlib {matplotlib.__version__}: TypeError: {error}")
            ax = fig.add_subplot(projection="3d")    # the fix
        ax.plot_surface(X, Y, Z)
        ax.set_zlim(-100, 2000)
        ax.view_init(50, -50)
        ax.set_xlabel("X_label")
        ax.set_ylabel("Y_label")
        plt.show()
        """),
        md(r"""
        ## 5. Two typos

        **Seed 003** lists the local derivatives of its mini-batch network
        $i_1 = X W_1 + b_1$, $o_1 = s(i_1)$, $i_2 = o_1 W_2 + b_2$, $o_2 = s(i_2)$, and among them
        writes $\partial i_2 / \partial o_2 = w_2$. It means $\partial i_2 / \partial o_1 = W_2$ (its
        own chain for $\Delta W_1$ uses $\partial i_2/\partial o_1$): $i_2$ is computed from $o_1$;
        $o_2$ is computed *from* $i_2$, so $i_2$ does not depend on $o_2$ at all. One row of the
        mini-batch, in the engine:
        """),
        code("""
        o1 = [Value(v, label=f"o1[{j}]") for j, v in enumerate((0.2, 0.7, 0.4))]
        W2 = [Value(v, label=f"W2[{j}]") for j, v in enumerate((0.5, -1.5, 0.8))]
        b2 = Value(0.1, label="b2")
        i2 = linear(W2, o1, b2)                      # i2 = o1 W2 + b2
        o2 = i2.sigmoid()
        print("d i2 / d o1 =", grad(i2, o1), "= W2 =", [w.data for w in W2])
        try:
            grad(i2, [o2])
        except ValueError as error:
            print("d i2 / d o2: ValueError:", error)
        """),
        md(r"""
        **Seed 001** says the forward pass of its 2-2-2 example gives the outputs
        "[0.75136079, 0.772928465]". out_o1 is 0.751365069552316: to eight digits 0.75136507,
        and the figures the article derives from it use that value.
        """),
        code("""
        from tinygrad_bp import worked_example as we

        (out_o1, out_o2), _ = we.build().forward()
        print(f"out_o1 = {out_o1.data!r}: 0.75136507 to eight digits; the article prints 0.75136079 "
              f"(off by {abs(out_o1.data - 0.75136079):.2e})")
        print(f"out_o2 = {out_o2.data!r}: the article's 0.772928465 is right")
        """),
    ]


if __name__ == "__main__":  # pragma: no cover - a quick look at the cell counts
    for fn in (seed004_checks, mnist_honestly, adam_explained, article_bugs):
        print(fn.__name__, len(fn()), "cells")


# =================================================================================================
# 06 exercises
# =================================================================================================


def exercises() -> list[Cell]:
    """06: derive gradients by hand and have the library say whether they are right."""
    return [
        md(r"""
        # Exercises: derive it yourself, the library checks

        Each exercise asks for a derivative of the articles' 2-2-2 network (notebook 02). Work it
        out by hand (or with a calculator), write it in the cell, run the check after it.
        `check(output, wrt, answer)` compares your answer with the engine and says, in words,
        whether it is right; give it a **chain of factors** (one local derivative per edge, output
        first) and it names the first factor that is wrong and what it should be.

        The numbers you need are printed below: the forward pass in the article's names.
        """),
        code("""
        import tinygrad_bp
        from tinygrad_bp import custom_op, gradcheck, sigmoid
        from tinygrad_bp import worked_example as we
        from tinygrad_bp.explain import check

        ex = we.build()
        _, E = ex.forward()
        n = {node.label: node for node in tinygrad_bp.toposort(E) if node.label}
        names = ["i1", "i2", "t1", "t2", "w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8", "b1", "b2",
                 "net_h1", "out_h1", "net_h2", "out_h2", "net_o1", "out_o1", "net_o2", "out_o2", "E_total"]
        for name in names:
            print(f"{name:<7} = {n[name].data:.9f}")
        """),
        md(r"""
        ## 1. dE/dw6

        $w_6$ connects $h_2$ to $o_1$. Write $\partial E_{total}/\partial w_6$ as a number.
        (Hint: like $w_5$ in notebook 02, with $out_{h2}$ instead of $out_{h1}$.)
        """),
        code("""
        answer_w6 = None   # your number, e.g. 0.0827
        """),
        code("""
        if answer_w6 is None:
            print("write your answer above, then run this cell")
        else:
            print(check(E, n["w6"], answer_w6))
        """),
        md(r"""
        ## 2. dE/dw2 as a chain

        Write $\partial E_{total}/\partial w_2$ the article's way, as a list of three factors:
        $\partial E_{total}/\partial out_{h1}$ (what $out_{h1}$ receives from both outputs),
        $\partial out_{h1}/\partial net_{h1}$ and $\partial net_{h1}/\partial w_2$.
        """),
        code("""
        chain_w2 = None   # [dE/dout_h1, dout_h1/dnet_h1, dnet_h1/dw2]
        """),
        code("""
        if chain_w2 is None:
            print("write your chain above, then run this cell")
        else:
            print(check(E, n["w2"], chain_w2))
        """),
        md(r"""
        ## 3. A delta

        $\delta_{h2} = \partial E_{total}/\partial net_{h2} = out_{h2}(1 - out_{h2})
        (\delta_{o1} w_6 + \delta_{o2} w_8)$, with $\delta_{ok} = (out_{ok} - t_k)\, out_{ok}(1 - out_{ok})$.
        """),
        code("""
        delta_h2 = None   # your number
        """),
        code("""
        if delta_h2 is None:
            print("write your answer above, then run this cell")
        else:
            print(check(E, n["net_h2"], delta_h2))
        """),
        md(r"""
        ## 4. The derivative of a new operation

        SiLU (also called swish) is $f(x) = x\, s(x)$. Write its derivative $f'(x)$; the library
        registers the operation with your derivative and `gradcheck` compares it with finite
        differences at a few points.
        """),
        code("""
        def silu_derivative(x):
            return None   # your f'(x); sigmoid(x) works on numbers and on Values
        """),
        code("""
        silu = custom_op("silu", lambda x: x * sigmoid(x), silu_derivative)
        if silu_derivative(0.5) is None:
            print("write your derivative above, then run this cell")
        else:
            for x in (-2.0, -0.3, 0.5, 1.7):
                ok = gradcheck(lambda v: silu(v), [x], raise_exception=False)
                print(f"x = {x:>4}: {'right' if ok else 'WRONG: the engine and finite differences differ'}")
        """),
        md("""
        ## Answers (try first!)

        The same checks with answers filled in: a right one, and a typical mistake for each.
        """),
        code("""
        print(check(E, n["w6"], 0.0826676))          # right
        print(check(E, n["w6"], 0.0821670))          # dE/dw5's value: out_h1 used instead of out_h2
        """),
        code("""
        print(check(E, n["w2"], [0.036350306, 0.241300709, 0.1]))    # right: dnet_h1/dw2 = i2
        print(check(E, n["w2"], [0.036350306, 0.241300709, 0.05]))   # i1 instead of i2
        print(check(E, n["w2"], [0.055399425, 0.241300709, 0.1]))    # only what out_h1 receives from o1
        """),
        code("""
        d_o1 = (n["out_o1"].data - we.TARGETS[0]) * n["out_o1"].data * (1 - n["out_o1"].data)
        d_o2 = (n["out_o2"].data - we.TARGETS[1]) * n["out_o2"].data * (1 - n["out_o2"].data)
        h2 = n["out_h2"].data
        w5, w6, w7, w8 = (n[k].data for k in ("w5", "w6", "w7", "w8"))
        print(check(E, n["net_h2"], h2 * (1 - h2) * (d_o1 * w6 + d_o2 * w8)))   # right
        print(check(E, n["net_h2"], h2 * (1 - h2) * (d_o1 * w5 + d_o2 * w7)))   # h1's weights
        """),
        code("""
        def s(x):
            return sigmoid(x)

        right = custom_op("silu", lambda x: x * s(x), lambda x: s(x) + x * s(x) * (1 - s(x)))
        print("right:", gradcheck(lambda v: right(v), [0.5], raise_exception=False))
        wrong = custom_op("silu", lambda x: x * s(x), lambda x: s(x) * (1 - s(x)))  # s'(x) alone
        print("s'(x) alone:", gradcheck(lambda v: wrong(v), [0.5], raise_exception=False))
        """),
    ]


def articles_code() -> list[Cell]:
    """07: the bugs in the articles' code, each run where it occurs."""
    return article_bugs()


NOTEBOOKS: dict[str, Callable[[], list[Cell]]] = {
    "00_quickstart.ipynb": quickstart,
    "01_perceptrons.ipynb": perceptrons,
    "02_worked_example.ipynb": worked_example,
    "03_minibatch_network.ipynb": minibatch_network,
    "04_himmelblau_adam.ipynb": himmelblau_adam,
    "05_training.ipynb": training,
    "06_exercises.ipynb": exercises,
    "07_the_articles_code.ipynb": articles_code,
}


def make_notebook(name: str) -> nbformat.NotebookNode:
    """The notebook ``name`` without outputs, with fixed cell ids (reproducible files)."""
    cells = NOTEBOOKS[name]()
    stem = name.split("_", 1)[0]
    for i, cell in enumerate(cells):
        cell["id"] = f"nb{stem}-{i:02d}"
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": KERNEL_DISPLAY_NAME, "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def kernel_manager() -> object:
    """A kernel manager that starts ipykernel on THIS interpreter (sys.executable).

    The kernelspec named ``python3`` found on the Jupyter path could belong to another Python
    (a user-wide install, another virtual environment); this one cannot.
    """
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec = KernelSpec(
        argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        display_name=KERNEL_DISPLAY_NAME,
        language="python",
    )

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:  # noqa: ARG002 - one kernel only
            return spec

    return KernelManager(kernel_name="python3", kernel_spec_manager=ThisPython())


def execute(nb: nbformat.NotebookNode, cwd: str | Path, timeout: int = TIMEOUT) -> nbformat.NotebookNode:
    """Run ``nb`` in place, top to bottom, in a fresh kernel of this interpreter, in ``cwd``.

    Raises nbclient's CellExecutionError on the first cell that fails.
    """
    from nbclient import NotebookClient

    client = NotebookClient(
        nb,
        km=kernel_manager(),
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
        record_timing=False,
        coalesce_streams=True,
        store_widget_state=False,  # a stored stepper shows its text/html picture instead
    )
    client.execute()
    nb.metadata["language_info"] = {"name": "python"}  # no interpreter version: reproducible files
    return nb


def stable_widget_ids(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """``nb`` with its widgets' random model ids replaced by ids derived from ``name`` and their order.

    The kernel creates the widgets in the same order on every run, so the stored file does not
    change when nothing else does.
    """
    widgets = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    state = widgets.get("state", {})
    if not state:
        return nb
    text = nbformat.writes(nb)
    for k, old in enumerate(list(state)):
        text = text.replace(old, uuid.uuid5(uuid.NAMESPACE_URL, f"tinygrad_bp/notebooks/{name}/{k}").hex)
    return nbformat.reads(text, as_version=4)


def build(name: str, *, run: bool = True) -> float:
    """Write ``notebooks/name`` (executed when ``run``); return the execution time in seconds."""
    nb = make_notebook(name)
    elapsed = 0.0
    if run:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            execute(nb, tmp)
            elapsed = time.perf_counter() - start
        nb = stable_widget_ids(nb, name)
    NOTEBOOK_DIR.mkdir(exist_ok=True)
    nbformat.validate(nb)
    nbformat.write(nb, NOTEBOOK_DIR / name)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    """Build the notebooks named on the command line (all by default)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="build only the notebooks whose names start with these")
    parser.add_argument("--no-execute", action="store_true", help="write the cells without running them")
    args = parser.parse_args(argv)
    # The kernels inherit this: set and str-keyed dict orders (and so any output that depends on
    # them) are the same on every build.
    os.environ["PYTHONHASHSEED"] = "0"
    names = [n for n in NOTEBOOKS if not args.only or any(n.startswith(p) for p in args.only)]
    if not names:
        parser.error(f"no notebook matches {args.only}; the notebooks are {', '.join(NOTEBOOKS)}")
    total = 0.0
    for name in names:
        elapsed = build(name, run=not args.no_execute)
        total += elapsed
        size = (NOTEBOOK_DIR / name).stat().st_size
        print(f"{name:<28} {elapsed:6.1f} s  {size / 1024:7.1f} KiB", flush=True)
    if not args.no_execute:
        print(f"{'total':<28} {total:6.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
