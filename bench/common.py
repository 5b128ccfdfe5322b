"""Shared benchmark plumbing: Django set-up, result recording, data builders, the worker.

Django settings can be configured once per process, so every (benchmark, backend, durability
mode) runs in a subprocess of its own::

    python -m bench.common <module> <backend> <out.json> [--quick] [--mode code-only]
                           [--template URL]
    python -m bench.common --migrate URL          # fill a template database

The worker sets the durability mode (``bench.databases``), creates a throw-away database (a copy
of the migrated template when one is given), configures Django for it, calls
``bench.<module>.run(recorder, quick=...)`` and writes what the recorder collected as JSON. The
database is dropped afterwards, whatever happened.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

from bench.databases import (
    BACKENDS,
    apply_mode,
    bench_database,
    database_settings,
    durability_setting,
    postgres_available,
)
from bench.interleave import Comparison, Spread, quantile

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
API_TOKEN = "bench-token-0123456789abcdef"


def configure_django(url: str, *, migrate: bool = True) -> None:
    """Configure Django in this process for the database at ``url`` (and migrate it)."""
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
    if migrate:
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


# -- results ---------------------------------------------------------------------------------


def percentile(samples: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``samples`` by linear interpolation; 0.0 when empty."""
    return quantile(samples, q / 100)


@dataclass
class Recorder:
    """Collects what one benchmark process measured: ratios (per round, optionally for a line
    of the target table), metrics, checks (``target``), plot series and notes."""

    benchmark: str
    backend: str
    quick: bool = False
    mode: str = "durable"
    metrics: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    ratios: list[dict[str, Any]] = field(default_factory=list)

    @property
    def code_only(self) -> bool:
        """True in the pass that runs with commits not waiting for the disk."""
        return self.mode == "code-only"

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

    def rates(self, comparison: Comparison, unit: str = "ops/s", *, label: str = "") -> None:
        """Record the median rate of every scenario of ``comparison`` with its spread."""
        for name in comparison.rates:
            spread = comparison.rate(name)
            self.metric(f"{label}{name}", spread.median, unit, low=round(spread.low, 1),
                        high=round(spread.high, 1), rounds=len(spread.values))

    def ratio(self, name: str, comparison: Comparison, numerator: str, denominator: str, *,
              target: str | None = None, why: str = "") -> Spread:
        """Record ``numerator / denominator`` of ``comparison`` (per round: median, spread).

        ``target`` names the line of ``bench.targets.TARGETS`` this ratio measures, if any.
        """
        spread = comparison.ratio(numerator, denominator)
        self.ratios.append({
            "name": name, "target": target, "numerator": numerator,
            "denominator": denominator, "why": why, **spread.as_dict(),
            "rates": {side: comparison.rate(side).as_dict(1) for side in (numerator, denominator)},
            "plan": {"rounds": comparison.plan.rounds,
                     "round_seconds": comparison.plan.round_seconds,
                     "slice_seconds": comparison.plan.slice_seconds},
        })
        return spread

    def note(self, text: str) -> None:
        self.notes.append(text)

    def as_dict(self) -> dict[str, Any]:
        return {"benchmark": self.benchmark, "backend": self.backend, "quick": self.quick,
                "mode": self.mode, "metrics": self.metrics, "targets": self.targets,
                "ratios": self.ratios, "series": self.series, "notes": self.notes,
                "info": self.info}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` or None when either is missing or the denominator is 0."""
    if not numerator or not denominator:
        return None
    return numerator / denominator


def machine_info() -> dict[str, Any]:
    """Python, platform, CPU count and the 1-minute load average (others' work skews rates)."""
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "load": round(os.getloadavg()[0], 2)}


def rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc``; else the peak from rusage)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


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


def run_worker(module: str, backend: str, out: Path, *, quick: bool, mode: str = "durable",
               template: str | None = None) -> int:
    """Run ``bench.<module>.run`` against a fresh ``backend`` database; write JSON to ``out``."""
    apply_mode(mode)
    recorder = Recorder(benchmark=module, backend=backend, quick=quick, mode=mode)
    started = time.perf_counter()
    code = 0
    try:
        with bench_database(backend, module, template=template) as url:
            os.environ["BENCH_DATABASE_URL"] = url
            os.environ["BENCH_QUICK"] = "1" if quick else ""
            configure_django(url, migrate=template is None)
            recorder.info.update(machine_info(), database=backend_version(), url_backend=backend,
                                 durability=durability_setting())
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


def migrate_template(url: str) -> int:
    """Migrate the (template) database at ``url``."""
    configure_django(url)
    from django.db import connections

    connections.close_all()
    return 0


def _option(argv: list[str], name: str) -> str | None:
    if name in argv:
        index = argv.index(name)
        value = argv[index + 1]
        del argv[index:index + 2]
        return value
    return None


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    argv = list(argv)
    target = _option(argv, "--migrate")
    if target:
        return migrate_template(target)
    mode = _option(argv, "--mode") or "durable"
    template = _option(argv, "--template")
    quick = "--quick" in argv
    args = [a for a in argv if a != "--quick"]
    if len(args) != 3:
        sys.exit("usage: python -m bench.common <module> <backend> <out.json> [--quick] "
                 "[--mode durable|code-only] [--template URL]")
    return run_worker(args[0], args[1], Path(args[2]), quick=quick, mode=mode,
                      template=template)


__all__ = ["API_TOKEN", "BACKENDS", "RESULTS", "ROOT", "Recorder", "backend_version",
           "configure_django", "credit", "ledger_consistent", "machine_info", "make_product",
           "make_users", "percentile", "postgres_available", "ratio", "remaining_total",
           "rss_bytes", "run_worker", "service"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
