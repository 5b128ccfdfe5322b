"""A doc snippet that shows a refusal fails loudly when the refusal does not happen.

``try: <call>  except SomeError: <check the error>`` alone still "runs as pasted" when the call
succeeds (the handler is skipped, nothing is checked), so ``tests/test_docs_snippets.py`` would
not notice a refusal that stopped being one. Every top-level ``try`` with an ``except`` in the
``python`` blocks of README.md and docs/*.md therefore needs an ``else:`` (raising
``AssertionError("expected …")``). A ``try`` inside a function is ordinary code, not a shown
refusal, and is left alone.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.examples.readme_runner import code_blocks
from tests.helpers import backend_independent

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _top_level_tries(tree: ast.Module) -> list[ast.Try]:
    """``try`` statements outside any function or class (also inside top-level if/for/with)."""
    found: list[ast.Try] = []
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        if isinstance(node, ast.Try | ast.TryStar):
            found.append(node)  # type: ignore[arg-type]
        pending.extend(ast.iter_child_nodes(node))
    return found


def refusals_without_else(page: Path, root: Path = ROOT) -> list[str]:
    """``page:line`` (relative to ``root``) of every top-level ``try … except`` without an
    ``else`` branch."""
    missing: list[int] = []
    for line, source in code_blocks(page, "python"):
        tree = ast.parse(source, feature_version=(3, 12))
        for node in _top_level_tries(tree):
            if node.handlers and not node.orelse:
                missing.append(line + node.lineno)
    return [f"{page.relative_to(root).as_posix()}:{where}" for where in sorted(missing)]


@backend_independent
def test_every_shown_refusal_fails_when_nothing_is_refused() -> None:
    assert [where for page in PAGES for where in refusals_without_else(page)] == []


@backend_independent
def test_the_check_finds_a_refusal_without_else(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("Text.\n\n```python\ntry:\n    int('x')\nexcept ValueError:\n    pass\n"
                    "```\n\n```python\ndef parse(text):\n    try:\n        return int(text)\n"
                    "    except ValueError:\n        return None\n```\n", encoding="utf-8")
    assert refusals_without_else(page, tmp_path) == ["page.md:4"]
