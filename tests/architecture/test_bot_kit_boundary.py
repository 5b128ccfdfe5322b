"""The seam between bot_kit and billable, checked on the source (AST, nothing is imported).

* ``bot_kit/billing.py`` (the port) is the kit's only door into billable: every other kit module
  imports from billable only framework-level modules (errors, signals, metrics, logs, health,
  dashboard, tasks) — never ``billable.models``, ``billable.services``, the ledger engine or
  anything else.
* The port itself imports only billable's public layer (``PORT_FACADES``: the service facades,
  the growth workflows, the read selectors) and the framework modules: never a model or the
  ledger engine.
* No kit module but the port runs SQL (``cursor``), and no import cycle exists in ``bot_kit``.
* A function-level import says why, on its line or in a comment right above its group of
  imports (Django's app registry, or an optional dependency).

``test_the_checker_fails_on_*`` prove the checker reports each kind of violation.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PORT = "bot_kit.billing"

#: Framework-level billable modules any kit module may import (no models, no engine).
FRAMEWORK = ("billable.exceptions", "billable.signals", "billable.metrics", "billable.logs",
             "billable.health", "billable.dashboard", "billable.tasks", "billable.viewtools")
#: What the port may import besides FRAMEWORK: billable's public facades, workflows and selectors.
PORT_FACADES = ("billable.services", "billable.services.identities", "billable.services.trials",
                "billable.growth.promo", "billable.growth.gifts", "billable.growth.alerts",
                "billable.selectors.catalog", "billable.selectors.orders",
                "billable.selectors.wallet")
REASONS = ("app registry", "optional dependency")


@dataclass(frozen=True)
class Import:
    module: str  # the module loaded (``from a import b`` where ``a.b`` is a module: ``a.b``)
    name: str  # the imported name ("" for ``import a``)
    line: int
    local: bool  # inside a function

    @property
    def full(self) -> str:
        """``a.b.Name`` for a name, ``a.b`` for a module."""
        if not self.name or self.module.endswith("." + self.name):
            return self.module
        return f"{self.module}.{self.name}"


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(module: str, source: str, *, package: bool = False) -> list[Import]:
    """Every import of ``source`` (``if TYPE_CHECKING`` blocks excluded), relative ones resolved."""
    found: list[Import] = []
    base_parts = module.split(".") if package else module.split(".")[:-1]

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.extend(Import(a.name, "", child.lineno, local) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                target = child.module or ""
                if child.level:
                    parts = base_parts[:len(base_parts) - (child.level - 1)]
                    target = ".".join([*parts, *([target] if target else [])])
                for alias in child.names:
                    loaded = f"{target}.{alias.name}"
                    found.append(Import(loaded if _is_module(loaded) else target, alias.name,
                                        child.lineno, local))
            visit(child, local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(ast.parse(source), False)
    return found


def kit_sources() -> dict[str, tuple[str, bool]]:
    """``{module: (source, is_package)}`` of every bot_kit module (migrations excluded)."""
    sources = {}
    for path in sorted((ROOT / "bot_kit").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        package = parts[-1] == "__init__"
        if package:
            parts = parts[:-1]
        sources[".".join(parts)] = (path.read_text(encoding="utf-8"), package)
    return sources


def boundary_violations(sources: Mapping[str, tuple[str, bool]]) -> list[str]:
    """Every billable import a kit module may not make (see the module docstring)."""
    problems = []
    for module, (source, package) in sources.items():
        for imp in imports_of(module, source, package=package):
            if not _under(imp.module, ("billable",)):
                continue
            if _under(imp.module, FRAMEWORK) or _under(imp.full, FRAMEWORK):
                continue
            if module == PORT and imp.module in PORT_FACADES:
                continue
            problems.append(f"{module}:{imp.line} imports {imp.full}")
    return problems


def sql_violations(sources: Mapping[str, tuple[str, bool]]) -> list[str]:
    """Kit modules other than the port that open a database cursor or run raw SQL."""
    markers = (".cursor(", ".raw(", "RawSQL(", ".extra(")
    return [f"{module} runs SQL ({marker})" for module, (source, _) in sources.items()
            if module != PORT for marker in markers if marker in source]


def import_cycles(sources: Mapping[str, tuple[str, bool]]) -> list[list[str]]:
    """Strongly connected groups (> 1 module, or a module importing itself) of the kit."""
    graph: dict[str, set[str]] = {}
    for module, (source, package) in sources.items():
        edges = set()
        for imp in imports_of(module, source, package=package):
            target = imp.module
            if imp.name and f"{target}.{imp.name}" in sources:
                target = f"{target}.{imp.name}"
            if target in sources and target != module and not module.startswith(target + "."):
                edges.add(target)  # a parent package is always loaded first: not a cycle
        graph[module] = edges
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in graph:
        if node not in index:
            connect(node)
    return cycles


def _comment_of(lines: list[str], line: int) -> str:
    """The import's own line and the comment above its group of consecutive imports."""
    text = [lines[line - 1]]
    above = line - 2
    while above >= 0 and lines[above].strip().startswith(("from ", "import ")):
        above -= 1
    if above >= 0 and lines[above].strip().startswith("#"):
        text.append(lines[above])
    return " ".join(text).lower()


def unexplained_local_imports(sources: Mapping[str, tuple[str, bool]]) -> list[str]:
    """Function-level imports without a reason on their line or above their import group."""
    problems = []
    for module, (source, package) in sources.items():
        lines = source.splitlines()
        for imp in imports_of(module, source, package=package):
            if not imp.local:
                continue
            if not any(reason in _comment_of(lines, imp.line) for reason in REASONS):
                problems.append(f"{module}:{imp.line} imports {imp.module} in a function "
                                f"without a reason")
    return problems


def test_only_the_port_imports_billables_models_services_and_engine() -> None:
    assert boundary_violations(kit_sources()) == []


def test_no_kit_module_but_the_port_runs_sql() -> None:
    assert sql_violations(kit_sources()) == []


def test_bot_kit_has_no_import_cycle() -> None:
    assert import_cycles(kit_sources()) == []


def test_function_level_imports_say_why() -> None:
    assert unexplained_local_imports(kit_sources()) == []


def test_the_port_has_no_interim_model_reads_left() -> None:
    """Every port function goes through a facade, workflow or selector: no ``# port: switch
    to …`` marks, no model or engine import (not even inside a function)."""
    source, package = kit_sources()[PORT]
    assert "# port: switch to" not in source
    loaded = {i.module for i in imports_of(PORT, source, package=package)}
    assert not {m for m in loaded if _under(m, ("billable.models", "billable.ledger"))}


def test_the_checker_fails_on_a_forbidden_import() -> None:
    synthetic = {
        "bot_kit.middlewares.synthetic": (
            "from billable.models import Reservation\n"
            "from billable.services import holds\n"
            "from billable.exceptions import BillableError\n"
            "from billable import metrics\n", False),
        PORT: ("from billable.ledger import wallet\n"
               "from billable.services import OrderService\n"
               "def f():\n"
               "    from billable.models import Order\n"
               "    from billable.selectors import catalog\n", False),
    }

    assert boundary_violations(synthetic) == [
        "bot_kit.middlewares.synthetic:1 imports billable.models.Reservation",
        "bot_kit.middlewares.synthetic:2 imports billable.services.holds",
        "bot_kit.billing:1 imports billable.ledger.wallet",
        "bot_kit.billing:4 imports billable.models.Order",
    ]


def test_the_checker_fails_on_sql_a_cycle_and_an_unexplained_local_import() -> None:
    synthetic = {
        "bot_kit.a": ("from bot_kit import b\n"
                      "def f():\n"
                      "    from django.db import connection\n"
                      "    connection.cursor().execute('SELECT 1')\n", False),
        "bot_kit.b": ("def g():\n"
                      "    # app registry: models load on first use\n"
                      "    from bot_kit import a\n", False),
        "bot_kit": ("", True),
    }

    assert sql_violations(synthetic) == ["bot_kit.a runs SQL (.cursor()"]
    assert import_cycles(synthetic) == [["bot_kit.a", "bot_kit.b"]]
    assert unexplained_local_imports(synthetic) == [
        "bot_kit.a:3 imports django.db in a function without a reason"]
