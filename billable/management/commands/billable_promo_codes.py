"""``billable_promo_codes``: generate N random promo codes and write them as CSV.

Example: 100 single-use codes worth the ``FREE_5`` offer, printed as CSV::

    manage.py billable_promo_codes 100 --offer FREE_5 --max-uses 1 --batch spring

``--export BATCH`` writes the existing codes of a batch instead (with their use counts).
The options are checked by :func:`billable.growth.codes.code_template` (the check of the Python
API and the admin page) before anything is written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billable.exceptions import BillableError
from billable.growth.codes import codes_csv, generate_codes
from billable.models import PromoCode


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)  # naive: the current time zone (code_template)
    except ValueError as exc:
        raise CommandError(f"Not an ISO date/time: {value!r}") from exc


class Command(BaseCommand):
    help = "Generate random promo codes (CSV on stdout), or export a batch of codes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("count", type=int, nargs="?", default=0,
                            help="How many codes to create.")
        parser.add_argument("--kind", choices=[k.value for k in PromoCode.Kind],
                            default=None, help="grant (default with --offer only), percent or "
                                               "fixed.")
        parser.add_argument("--offer", help="SKU granted (grant) or discounted (discounts).")
        parser.add_argument("--percent-off", type=int)
        parser.add_argument("--amount-off")
        parser.add_argument("--currency", default="")
        parser.add_argument("--max-uses", type=int, help="Uses per code (empty: unlimited).")
        parser.add_argument("--first-time-only", action="store_true")
        parser.add_argument("--valid-from")
        parser.add_argument("--valid-until")
        parser.add_argument("--prefix", default="")
        parser.add_argument("--length", type=int, default=10)
        parser.add_argument("--batch", default="", help="Label stored on every code.")
        parser.add_argument("--export", metavar="BATCH",
                            help="Write the codes of this batch instead of creating any.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["export"]:
            codes = PromoCode.objects.filter(batch=options["export"]).select_related("offer")
            self.stdout.write(codes_csv(codes.order_by("id")), ending="")
            return
        try:
            created = generate_codes(options["count"], prefix=options["prefix"],
                                     length=options["length"], batch=options["batch"],
                                     **self._template(options))
        except BillableError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(codes_csv(created), ending="")
        self.stderr.write(f"Created {len(created)} codes.")

    def _template(self, options: dict[str, Any]) -> dict[str, Any]:
        """The options as ``generate_codes`` fields (the kind defaults from what is given)."""
        kind = options["kind"] or ("percent" if options["percent_off"] is not None else
                                   "fixed" if options["amount_off"] else "grant")
        return {"kind": kind, "offer": options["offer"] or None,
                "percent_off": options["percent_off"], "amount_off": options["amount_off"] or None,
                "currency": options["currency"], "max_uses": options["max_uses"],
                "first_time_only": options["first_time_only"],
                "valid_from": _when(options["valid_from"]),
                "valid_until": _when(options["valid_until"])}
