"""Shared benchmark plumbing: databases, Django set-up, timing and result recording.

Django settings can be configured once per process, so every (benchmark, backend) pair runs in a
subprocess of its own::

    python -m bench.common <module> <backend> <out.json> [--quick]

The worker creates a throw-away database (an SQLite file in a temporary directory, or a
PostgreSQL database named ``bench_<module>_<pid>``), configures Django for it, migrates, calls
``bench.<module>.run(recorder, quick=...)`` and writes what the recorder collected as JSON. The
database is dropped afterwards, whatever happened.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PG_URL_DEFAULT = "postgres://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", "postgresql")
API_TOKEN = "bench-token-0123456789abcdef"


# -- databases ---------------------------------------------------------------------------------


def pg_admin_url() -> str:
    """The maintenance PostgreSQL URL: ``BILLABLE_PG_URL``, a postgres ``DATABASE_URL``, local."""
    for name in ("BILLABLE_PG_URL", "DATABASE_URL"):
        value = os.environ.get(name, "")
        if value.startswith(("postgres://", "postgresql://")):
            return value
    return PG_URL_DEFAULT


def postgres_available(url: str | None = None) -> bool:
    """True when a PostgreSQL server answers at ``url`` (TCP connect only, 3 s timeout)."""
    parsed = urlparse(url or pg_admin_url())
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 5432), 3):
            return True
    except OSError:
        return False


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead of its own."""
    return urlunparse(urlparse(url)._replace(path="/" + name))


def _pg_admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(pg_admin_url(), autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


@contextmanager
def bench_database(backend: str, name: str) -> Iterator[str]:
    """Create an empty database for one benchmark, yield its URL, drop it afterwards."""
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix=f"{name}_")
        try:
            yield f"sqlite:///{folder}/{name}.sqlite3"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    if not name.replace("_", "").isalnum():
        raise ValueError(f"unsafe database name {name!r}")
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(pg_admin_url(), name)
    finally:
        from django.db import connections

        connections.close_all()
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_settings(url: str) -> dict[str, Any]:
    """A Django ``DATABASES`` entry for ``url`` (``sqlite:///path`` or ``postgres://...``)."""
    parsed = urlparse(url)
    if parsed.scheme.startswith("sqlite"):
        # WAL + synchronous=NORMAL (the usual production set-up for SQLite): commits do not
        # wait for an fsync, so the numbers measure the code rather than the disk.
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parsed.path,
                "OPTIONS": {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL; "
                            "PRAGMA synchronous=NORMAL"}}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parsed.path.lstrip("/"),
        "USER": parsed.username or "postgres",
        "PASSWORD": parsed.password or "",
        "HOST": parsed.hostname or "127.0.0.1",
        "PORT": str(parsed.port or 5432),
    }


def configure_django(url: str) -> None:
    """Configure Django in this process for the database at ``url`` and migrate it."""
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-not-secret",
        USE_TZ=True,
        TIME_ZONE="UTC",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.admin",
            "billable",
            "bot_kit",
        ],
        DATABASES={"default": database_settings(url)},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        ROOT_URLCONF="examples.demo_project.urls",
        BILLABLE_API_TOKEN=API_TOKEN,
        BILLABLE_CURRENCY="USD",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        LOGGING_CONFIG=None,
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def backend_version() -> str:
    """``vendor version`` of the configured default database."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
        else:
            cursor.execute("SELECT sqlite_version()")
        row = cursor.fetchone()
    return f"{connection.vendor} {row[0] if row else '?'}"


# -- timing ------------------------------------------------------------------------------------


def percentile(samples: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``samples`` by linear interpolation; 0.0 when empty."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def round_seconds() -> float:
    """Time cap of one measuring round: ``BENCH_ROUND_SECONDS``, else 0.5 s quick / 1.5 s full."""
    value = os.environ.get("BENCH_ROUND_SECONDS")
    if value:
        return float(value)
    return 0.5 if os.environ.get("BENCH_QUICK") == "1" else 1.5


def measure_rate(op: Callable[[int], Any], *, count: int, repeats: int = 3,
                 tick: Callable[[], None] | None = None, seconds: float | None = None,
                 min_calls: int = 5) -> float:
    """Operations per second of ``op(i)``: the best of ``repeats`` rounds.

    A round stops after ``count`` calls or once ``seconds`` (default :func:`round_seconds`)
    have passed, whichever comes first, but never before ``min_calls``: the whole suite keeps
    a predictable run time however loaded the machine is. Best-of is used because the machine
    is shared: noise only ever makes a round slower.
    """
    cap = round_seconds() if seconds is None else seconds
    best = 0.0
    index = 0
    for _ in range(repeats):
        done = 0
        started = time.perf_counter()
        elapsed = 0.0
        while done < count and (done < min_calls or elapsed < cap):
            op(index)
            index += 1
            done += 1
            elapsed = time.perf_counter() - started
        best = max(best, done / elapsed if elapsed > 0 else 0.0)
        if tick:
            tick()
    return best


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


# -- results -----------------------------------------------------------------------------------


@dataclass
class Recorder:
    """Collects what one benchmark measured: metrics, target checks, plot series and notes."""

    benchmark: str
    backend: str
    quick: bool = False
    metrics: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str, value: float, unit: str, **extra: Any) -> float:
        """Record one measured number (``unit`` e.g. ``ops/s``, ``ms``, ``req/s``)."""
        self.metrics.append({"name": name, "value": round(float(value), 3), "unit": unit,
                             **extra})
        return value

    def target(self, name: str, *, value: float | None, required: float, why: str = "",
               unit: str = "x", at_most: bool = False) -> bool:
        """Check ``value >= required`` (``<=`` with ``at_most``) and record it.

        ``value=None`` records the target as not measured.
        """
        if value is None:
            passed = False
        else:
            passed = value <= required if at_most else value >= required
        self.targets.append({"name": name, "value": None if value is None else round(value, 3),
                             "required": required, "unit": unit, "passed": passed, "why": why,
                             "at_most": at_most})
        return passed

    def note(self, text: str) -> None:
        self.notes.append(text)

    def as_dict(self) -> dict[str, Any]:
        return {"benchmark": self.benchmark, "backend": self.backend, "quick": self.quick,
                "metrics": self.metrics, "targets": self.targets, "series": self.series,
                "notes": self.notes, "info": self.info}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` or None when either is missing or the denominator is 0."""
    if not numerator or not denominator:
        return None
    return numerator / denominator


def machine_info() -> dict[str, Any]:
    """Python, platform, CPU count and the 1-minute load average (others' work skews rates)."""
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "load": round(os.getloadavg()[0], 2)}


# -- data --------------------------------------------------------------------------------------


def make_users(count: int, *, prefix: str = "bench") -> list[Any]:
    """``count`` fresh billing users."""
    from django.contrib.auth import get_user_model

    model = get_user_model()
    stamp = f"{os.getpid()}_{time.monotonic_ns()}"
    return [model.objects.create(username=f"{prefix}_{stamp}_{i}") for i in range(count)]


def make_product(key: str, *, product_type: str = "quantity", is_currency: bool = False) -> Any:
    from billable.models import Product

    return Product.objects.create(product_key=key, name=key.title(), product_type=product_type,
                                  is_currency=is_currency)


def credit(user: Any, product: Any, quantity: int) -> Any:
    """Put ``quantity`` units on ``user``'s wallet: one batch plus its CREDIT ledger row."""
    from billable.models import QuotaBatch, Transaction

    batch = QuotaBatch.objects.create(user=user, product=product, initial_quantity=quantity,
                                      remaining_quantity=quantity)
    Transaction.objects.create(user=user, quota_batch=batch, amount=quantity,
                               direction=Transaction.Direction.CREDIT,
                               action_type="manual_grant")
    return batch


def service(name: str) -> Any:
    """``TransactionService.<name>``, or a clear error while the service is not written yet."""
    from billable.services import TransactionService

    method = getattr(TransactionService, name, None)
    if method is None:
        raise NotImplementedError(f"TransactionService.{name} is not implemented yet")
    return method


def ledger_consistent(user_ids: list[Any]) -> bool:
    """The SPEC §3 invariant for these users: per batch, initial − Σ DEBIT == remaining ≥ 0."""
    from django.db.models import Q, Sum

    from billable.models import QuotaBatch

    batches = QuotaBatch.objects.filter(user_id__in=user_ids).annotate(
        debits=Sum("transactions__amount", filter=Q(transactions__direction="DEBIT"),
                   default=0),
    )
    return all(b.remaining_quantity >= 0
               and b.initial_quantity - b.debits == b.remaining_quantity for b in batches)


def remaining_total(user_ids: list[Any]) -> int:
    from django.db.models import Sum

    from billable.models import QuotaBatch

    total = QuotaBatch.objects.filter(user_id__in=user_ids).aggregate(
        total=Sum("remaining_quantity", default=0))["total"]
    return int(total)


# -- worker entry point ------------------------------------------------------------------------


def run_worker(module: str, backend: str, out: Path, *, quick: bool) -> int:
    """Run ``bench.<module>.run`` against a fresh ``backend`` database; write JSON to ``out``."""
    recorder = Recorder(benchmark=module, backend=backend, quick=quick)
    started = time.perf_counter()
    code = 0
    try:
        with bench_database(backend, f"bench_{module}_{os.getpid()}") as url:
            os.environ["BENCH_DATABASE_URL"] = url
            os.environ["BENCH_QUICK"] = "1" if quick else ""
            configure_django(url)
            recorder.info.update(machine_info(), database=backend_version(), url_backend=backend)
            import_module(f"bench.{module}").run(recorder, quick=quick)
    except Exception as exc:  # the report must say what broke, not lose the whole run
        code = 1
        recorder.note(f"FAILED: {type(exc).__name__}: {exc}")
        recorder.info["traceback"] = traceback.format_exc(limit=8)
        traceback.print_exc()
    recorder.info["seconds"] = round(time.perf_counter() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(recorder.as_dict(), indent=2, default=str))
    return code


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    args = [a for a in sys.argv[1:] if a != "--quick"]
    if len(args) != 3:
        sys.exit("usage: python -m bench.common <module> <backend> <out.json> [--quick]")
    sys.exit(run_worker(args[0], args[1], Path(args[2]), quick="--quick" in sys.argv))
