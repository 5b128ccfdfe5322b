"""The layer rules of docs/architecture.md (*Layers*), enforced on the source."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.architecture.layers import cycles, module_graph, violations
from tests.helpers import backend_independent

#: No database, no backend-specific work: runs once, in the SQLite session.
pytestmark = backend_independent

ROOT = Path(__file__).resolve().parents[2]
BILLABLE, BOT_KIT = ROOT / "billable", ROOT / "bot_kit"

def test_billable_respects_its_layers():
    assert violations([BILLABLE, BOT_KIT]) == []


def test_no_import_cycle_in_billable():
    assert cycles(module_graph([BILLABLE])) == []


def test_no_import_cycle_in_bot_kit():
    assert cycles(module_graph([BOT_KIT])) == []


def test_function_level_imports_in_billable_are_few_and_reasoned():
    local = [e for e in module_graph([BILLABLE]) if e.function_level]
    assert all(e.reason for e in local)
    assert len({(e.source, e.line) for e in local}) <= 20


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "billable"


GOOD = {
    "billable/__init__.py": "",
    "billable/models/__init__.py": "",
    "billable/validation.py": "from billable import models\n",
    "billable/ledger/__init__.py": "",
    "billable/ledger/wallet.py": "from billable.validation import x\n",
    "billable/services/__init__.py": "from billable.services.a import AService\n",
    "billable/services/a.py": "from billable.ledger import wallet\n\nclass AService: ...\n",
    "billable/services/b.py": "from billable.ledger.wallet import y\n\nclass BService: ...\n",
    "billable/selectors/__init__.py": "from billable.models import z\n",
    "billable/api/__init__.py": "from billable.services import AService\n",
}


def test_a_clean_synthetic_tree_passes(tmp_path):
    assert violations([_tree(tmp_path, GOOD)]) == []


@pytest.mark.parametrize("name, text, expected", [
    ("billable/ledger/wallet.py", "from billable.services import AService\n",
     "billable.ledger.wallet:1 imports billable.services (the engine never imports a facade"),
    ("billable/ledger/wallet.py", "import billable.api\n",
     "billable.ledger.wallet:1 imports billable.api (the engine never imports a facade"),
    ("billable/services/a.py", "from billable.api import router\n\nclass AService: ...\n",
     "billable.services.a:1 imports billable.api (facades never import an interface)"),
    ("billable/services/b.py", "from billable.services.a import AService\n\nclass BService: ...\n",
     "billable.services.b:1 imports the facade billable.services.a"),
    ("billable/selectors/__init__.py", "from billable.services.a import AService\n",
     "billable.selectors:1 imports billable.services.a (selectors are reads below"),
    ("billable/ledger/wallet.py", "def f():\n    from billable.validation import x\n",
     "billable.ledger.wallet:2 imports billable.validation inside a function without a one-line"),
    ("billable/api/__init__.py", "from billable.models import Offer\n\nx = Offer.objects.all()\n",
     "billable.api:3 queries a model directly"),
    ("billable/validation.py", "from billable.ledger import wallet\n",
     "billable.validation:1 imports billable.ledger.wallet (validation sits under every"),
])
def test_a_forbidden_import_fails(tmp_path, name, text, expected):
    root = _tree(tmp_path, {**GOOD, name: text})
    found = violations([root])
    assert any(line.startswith(expected) for line in found), found


def test_a_reasoned_function_level_import_passes(tmp_path):
    text = "def f():\n    # reason: needs the app registry\n    from billable import models\n"
    root = _tree(tmp_path, {**GOOD, "billable/ledger/wallet.py": text})
    assert violations([root]) == []


def test_a_cycle_fails_even_through_a_function_level_import(tmp_path):
    text = ("from billable.ledger import wallet\n\n"
            "def f():\n    # reason: x\n    import billable.ledger.spend\n")
    root = _tree(tmp_path, {**GOOD, "billable/ledger/spend.py": text,
                            "billable/ledger/wallet.py": text.replace("wallet", "spend", 1)
                            .replace("billable.ledger.spend", "billable.ledger.wallet")})
    assert "import cycle: billable.ledger.spend -> billable.ledger.wallet" in violations([root])


def test_typing_only_imports_are_not_dependencies(tmp_path):
    text = ("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
            "    from billable.services.a import AService\n")
    root = _tree(tmp_path, {**GOOD, "billable/ledger/wallet.py": text})
    assert violations([root]) == []


def test_billable_services_exports_every_facade():
    import billable.services as services
    from tests.architecture.layers import facade_modules

    defined = set()
    for module in facade_modules([BILLABLE]):
        path = ROOT / (module.replace(".", "/") + ".py")
        import ast

        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined |= {n.name for n in tree.body
                    if isinstance(n, ast.ClassDef) and n.name.endswith("Service")}
    assert defined <= set(services.__all__), defined - set(services.__all__)
