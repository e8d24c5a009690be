"""Counts public functions, methods and classes of python/fpcore with a docstring.

Public: names without a leading underscore, in modules whose path has none either (``__init__`` counts), methods
only of public classes, nested functions not counted. Usage: ``python tools/docstring_coverage.py [--missing]``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "fpcore"


def public_definitions(path: Path):
    """(qualified name, has docstring) for the public top-level definitions and methods of one module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            yield node.name, ast.get_docstring(node) is not None
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and not item.name.startswith("_"):
                        yield f"{node.name}.{item.name}", ast.get_docstring(item) is not None


def main() -> None:
    documented, total, missing = 0, 0, []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if any(part.startswith("_") and part != "__init__.py" for part in relative.parts):
            continue
        for name, has_doc in public_definitions(path):
            total += 1
            documented += has_doc
            if not has_doc:
                missing.append(f"{relative}: {name}")
    if "--missing" in sys.argv:
        print("\n".join(missing))
    print(f"public functions/classes with a docstring: {documented} / {total}")


if __name__ == "__main__":
    main()
