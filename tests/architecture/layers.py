"""The one-way import rules of ``billable`` and ``bot_kit``, checked on the source (AST only).

:func:`module_graph` reads every ``.py`` file under the given package roots without importing
anything and records each ``import`` of a module of those packages: where it is, whether it sits
inside a function (a *function-level* import) and whether it carries a one-line reason comment.
:func:`violations` applies the rules of ``docs/architecture.md`` (*Layers*) to that graph.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    function_level: bool
    reason: bool
    internal: bool = True


#: (importer prefix, forbidden target prefixes, why)
FORBIDDEN: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("billable.ledger", ("billable.services", "billable.api", "billable.admin", "billable.compat",
                         "billable.selectors", "billable.management", "billable.growth",
                         "bot_kit"),
     "the engine never imports a facade or an interface"),
    ("billable.services", ("billable.api", "billable.admin", "billable.management",
                           "billable.growth", "bot_kit"),
     "facades never import an interface"),
    ("billable.growth", ("billable.api", "billable.admin", "billable.management", "bot_kit"),
     "workflows compose the facades and never import an interface"),
    ("billable.selectors", ("billable.services", "billable.api", "billable.admin", "bot_kit"),
     "selectors are reads below the facades"),
    ("billable.compat", ("billable.services", "billable.api", "billable.admin", "bot_kit"),
     "the 0.2 shapes are built from below, re-exported by the facades"),
    ("billable.validation", ("billable.services", "billable.ledger", "billable.api",
                             "billable.admin", "bot_kit"),
     "validation sits under every layer"),
    ("billable.models", ("billable.services", "billable.ledger", "billable.api",
                         "billable.admin", "billable.selectors", "bot_kit"),
     "models are the bottom layer"),
    ("billable.", ("bot_kit",), "bot_kit depends on billable, never the reverse"),
)


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(name: str, known: set[str]) -> str | None:
    """The longest known module that ``name`` is or lies in."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _reasoned(lines: list[str], lineno: int) -> bool:
    """A ``# comment`` on the import's line, or on the line above its group of imports.

    A group is a run of import lines (and their continuation and blank lines) inside one
    function: one reason comment above the group covers all of it.
    """
    if "#" in lines[lineno - 1]:
        return True
    for index in range(lineno - 2, -1, -1):
        text = lines[index].strip()
        if text.startswith("#"):
            return True
        if not text or text.startswith(("import ", "from ", ")")) or text.endswith((",", "(")):
            continue
        return False
    return False


class _Imports(ast.NodeVisitor):
    def __init__(self) -> None:
        self.depth = 0
        self.found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def _scope(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _scope

    def visit_If(self, node: ast.If) -> None:
        test = ast.unparse(node.test)
        if test.endswith("TYPE_CHECKING"):  # typing only: no runtime dependency
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.append((node, self.depth > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.found.append((node, self.depth > 0))


def module_graph(roots: Iterable[Path]) -> list[Edge]:
    """Every import made by modules under ``roots`` (package directories); ``internal`` when
    the imported module is one of them."""
    files: dict[str, Path] = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if "migrations" not in path.parts:
                files[module_name(root, path)] = path
    known = set(files)
    edges: list[Edge] = []
    for source, path in files.items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        visitor = _Imports()
        visitor.visit(ast.parse(text, filename=str(path)))
        package = source if path.name == "__init__.py" else source.rpartition(".")[0]
        for node, nested in visitor.found:
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [f"{base}.{alias.name}" for alias in node.names]
            for name in names:
                target = _resolve(name, known)
                if target == source:
                    continue
                edges.append(Edge(source, target or name, node.lineno, nested,
                                  _reasoned(lines, node.lineno), internal=target is not None))
    return edges


def _in(module: str, prefix: str) -> bool:
    if prefix.endswith("."):
        return module.startswith(prefix)
    return module == prefix or module.startswith(prefix + ".")


def facade_modules(roots: Iterable[Path]) -> set[str]:
    """Modules of ``billable.services`` that define a public ``…Service`` class."""
    found = set()
    for root in roots:
        folder = root / "services"
        if root.name != "billable" or not folder.is_dir():
            continue
        for path in folder.glob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            if any(isinstance(n, ast.ClassDef) and n.name.endswith("Service")
                   for n in tree.body):
                found.add(module_name(root, path))
    return found


def cycles(edges: Iterable[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if not edge.internal:
            continue
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def model_queries(roots: Iterable[Path], under: str = "billable.api") -> list[str]:
    """``Model.objects`` uses in ``under`` (the API reads through ``billable.selectors``)."""
    found = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            name = module_name(root, path)
            if not _in(name, under):
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Attribute) and node.attr == "objects":
                    found.append(f"{name}:{node.lineno} queries a model directly "
                                 "(the API reads through billable.selectors)")
    return found


def violations(roots: Iterable[Path], *, reasons_under: tuple[str, ...] = ("billable",)
               ) -> list[str]:
    """Every broken rule, as readable lines (empty: the layout is respected)."""
    roots = list(roots)
    edges = module_graph(roots)
    facades = facade_modules(roots)
    problems: list[str] = []
    for edge in edges:
        if edge.function_level and not edge.reason and any(_in(edge.source, r)
                                                           for r in reasons_under):
            problems.append(f"{edge.source}:{edge.line} imports {edge.target} inside a function "
                            "without a one-line reason comment")
        if not edge.internal:
            continue
        for importer, targets, why in FORBIDDEN:
            if _in(edge.source, importer) and any(_in(edge.target, t) for t in targets):
                problems.append(f"{edge.source}:{edge.line} imports {edge.target} ({why})")
                break
        if edge.source in facades and edge.target in facades:
            problems.append(f"{edge.source}:{edge.line} imports the facade {edge.target} "
                            "(facades never call sibling facades)")
    problems += model_queries(roots)
    for component in cycles(edges):
        problems.append("import cycle: " + " -> ".join(component))
    return problems
