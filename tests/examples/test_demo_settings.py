"""The demo project's settings: DEBUG off by default, SQLite set up for concurrent writers."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Sixteen threads consuming through the services on a fresh SQLite file configured exactly as
#: the demo configures it; prints ``<successes> <errors>``.
SCRIPT = textwrap.dedent("""
    import sys, threading
    import django
    from django.conf import settings
    from examples.demo_project.settings import database_from_url
    settings.configure(
        USE_TZ=True, SECRET_KEY="x", DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "billable"],
        DATABASES={"default": database_from_url("sqlite://" + sys.argv[1])})
    django.setup()
    from django.core.management import call_command
    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model
    from django.db import connections
    from billable.models import Offer, OfferItem, Product
    from billable.services import TransactionService as T
    user = get_user_model().objects.create(username="u")
    product = Product.objects.create(product_key="C", name="C", product_type="quantity")
    offer = Offer.objects.create(sku="PACK", name="p")
    OfferItem.objects.create(offer=offer, product=product, quantity=10_000)
    T.grant_offer(user.id, offer)
    done, errors = [], []
    def work():
        for _ in range(25):
            try:
                done.append(T.consume_quota(user.id, "C")["success"])
            except Exception as exc:
                errors.append(repr(exc))
        connections.close_all()
    threads = [threading.Thread(target=work) for _ in range(16)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert T.check_ledger() == [] and T.get_balance(user.id, "C") == 10_000 - sum(done)
    print(sum(done), len(errors), errors[:3])
""")


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> object:
    for name in ("DJANGO_DEBUG", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    path = ROOT / "examples" / "demo_project" / "settings.py"
    spec = importlib.util.spec_from_file_location("demo_settings_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # a fresh copy: the imported settings module is untouched
    return module


def test_debug_is_off_unless_asked_for(monkeypatch, tmp_path):
    monkeypatch.setenv("BILLABLE_DEMO_DIR", str(tmp_path))
    assert _settings(monkeypatch).DEBUG is False
    assert _settings(monkeypatch, DJANGO_DEBUG="1").DEBUG is True


def test_every_sqlite_database_of_the_demo_takes_the_write_lock_up_front(monkeypatch, tmp_path):
    monkeypatch.setenv("BILLABLE_DEMO_DIR", str(tmp_path))
    for env in ({}, {"DATABASE_URL": f"sqlite://{tmp_path}/other.sqlite3"}):
        options = _settings(monkeypatch, **env).DATABASES["default"]["OPTIONS"]
        assert options["transaction_mode"] == "IMMEDIATE" and options["timeout"] >= 10


def test_sixteen_concurrent_writers_on_the_demo_sqlite_never_fail(tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "demo.sqlite3")],
                            cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    done, errors = result.stdout.split()[:2]
    assert (int(done), int(errors)) == (400, 0), result.stdout
