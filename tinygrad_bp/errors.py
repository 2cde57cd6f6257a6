"""The exceptions tinygrad_bp raises.

Each one subclasses the built-in exception a caller would already catch, so
``except ValueError`` keeps working, while ``except TinygradBPError`` catches
everything this library raises on purpose.
"""

from __future__ import annotations

__all__ = [
    "DomainError",
    "GradcheckError",
    "GraphTooLargeError",
    "GraphvizNotFoundError",
    "LayoutError",
    "NonDifferentiableError",
    "OperationOverflowError",
    "TapeMismatchError",
    "TinygradBPError",
    "UnknownOperationError",
    "UnusedInputError",
    "ZeroDivisionInOperationError",
]


class TinygradBPError(Exception):
    """Base class of every exception raised on purpose by tinygrad_bp."""


class DomainError(TinygradBPError, ValueError):
    """An operation was given an input outside its domain.

    Raised when the graph is built, before any node is added: ``log`` of a
    number <= 0, ``sqrt`` of a negative number, a negative base to a
    non-integer power, zero to a negative power.
    """


class ZeroDivisionInOperationError(TinygradBPError, ZeroDivisionError):
    """A division by zero while building the graph (``a / 0``)."""


class OperationOverflowError(TinygradBPError, OverflowError):
    """An operation's result is too large for a float (``exp(1000)``, ``1e200 * 1e200``)."""


class NonDifferentiableError(TinygradBPError, ArithmeticError):
    """A local derivative is infinite or undefined where the backward pass needs it.

    For example d sqrt(x)/dx at x = 0. Raised during ``backward``/``grad``;
    no ``.grad`` has been written when it is raised.
    """


class UnknownOperationError(TinygradBPError, LookupError):
    """A node names an operation that has no derivative rule in the table.

    Raised when the node is built, naming the operation, never later in the
    backward pass.
    """


class UnusedInputError(TinygradBPError, RuntimeError, ValueError):
    """``grad`` was asked for an input the outputs do not depend on (and ``allow_unused`` is False).

    A RuntimeError, as ``torch.autograd.grad`` raises, and a ValueError, as tinygrad_bp 0.1 raised.
    """


class GradcheckError(TinygradBPError, AssertionError):
    """``gradcheck`` found an analytical gradient that disagrees with finite differences."""


class GraphTooLargeError(TinygradBPError, ValueError):
    """A drawing or an explanation was refused because the graph is too large.

    Raised at once, before any layout work; the message suggests the options
    that make the picture smaller.
    """


class GraphvizNotFoundError(TinygradBPError, RuntimeError):
    """A layout program is needed (SVG/PNG output) but neither ``dot`` nor ``graphviz-pure`` is installed."""


class LayoutError(TinygradBPError, RuntimeError):
    """The layout program (``dot`` or ``graphviz-pure``) failed on a drawing; its message is included."""


class TapeMismatchError(TinygradBPError, RuntimeError):
    """A recorded tape was replayed on inputs or a graph it does not describe."""
