"""Write the fast path from the rule table: the generated regions of value.py and engine.py.

    python scripts/generate.py          # rewrite the regions that are out of date
    python scripts/generate.py --check  # exit 1 if any region is out of date (CI does this in a test)

Only tinygrad_bp.errors, .expressions, .rules and .codegen are imported (not the
package's __init__), so this works even while a generated region is broken or empty.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tinygrad_bp"


def load_codegen() -> types.ModuleType:
    """tinygrad_bp.codegen, imported without running tinygrad_bp/__init__.py."""
    package = types.ModuleType("tinygrad_bp")
    package.__path__ = [str(PACKAGE)]
    sys.modules.setdefault("tinygrad_bp", package)
    from tinygrad_bp import codegen

    return codegen


def main(argv: list[str]) -> int:
    """Rewrite the stale regions, or with --check only report them."""
    codegen = load_codegen()
    if "--check" in argv:
        stale = codegen.stale()
        for path in stale:
            print(f"{path}: generated code is out of date; run python scripts/generate.py")
        return 1 if stale else 0
    for path in codegen.update():
        print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
