"""Optional dependencies: import one, or say which extra installs it.

The command line (``__main__`` and ``cli_train``) uses this; the library's
own optional imports (numpy for the tape, IPython for the widgets) say the
same in their own ImportErrors.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["EXTRA_HINT", "MissingExtraError", "require"]

EXTRA_HINT = "pip install 'tinygrad_bp[{extra}]'"


class MissingExtraError(Exception):
    """Raised when an optional dependency of a command is not installed; the message names the extra."""


def require(module: str, extra: str) -> Any:
    """Import ``module`` or raise MissingExtraError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        msg = f"this command needs {module}, which is not installed: {EXTRA_HINT.format(extra=extra)}"
        raise MissingExtraError(msg) from None
