"""Read-side helpers behind the admin reports (no writes, no HTML).

Every balance shown here uses ``QuotaBatch.objects.spendable()``, the same rule the services
apply, so a report never depends on whether the expiry job has run yet. Templates render the
dataclasses below with autoescaping on: nothing user-supplied is ever marked safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.apps import apps
from django.db.models import Case, IntegerField, Max, Q, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext

from billable.admin.display import admin_url, money
from billable.models import ExternalIdentity, Order, Product, QuotaBatch, Transaction

#: Ledger rows shown on one product report; older rows are folded into an opening balance.
REPORT_ROW_LIMIT = 500
CREDIT = Transaction.Direction.CREDIT
DEBIT = Transaction.Direction.DEBIT


@dataclass(frozen=True)
class Link:
    """A label with an optional admin URL (rendered as ``<a>`` only when ``url`` is set)."""

    label: str
    url: str | None = None


@dataclass(frozen=True)
class BatchSource:
    """One quota batch seen as a source of units (a credit)."""

    batch: QuotaBatch
    source: Link
    action_type: str
    spendable: bool
    state_label: str


@dataclass(frozen=True)
class LedgerRow:
    """One ledger transaction with the running balance after it."""

    transaction: Transaction
    credit: int
    debit: int
    balance: int
    document: Link | None


@dataclass
class ProductReport:
    """A user's history of one product: sources, ledger rows and balances."""

    user_id: Any
    product: Product
    sources: list[BatchSource] = field(default_factory=list)
    rows: list[LedgerRow] = field(default_factory=list)
    opening_balance: int = 0
    folded_rows: int = 0
    total_credit: int = 0
    total_debit: int = 0
    spendable: int = 0

    @property
    def ledger_balance(self) -> int:
        return self.total_credit - self.total_debit


@dataclass(frozen=True)
class ProductLine:
    """One product of a customer report."""

    product: Product
    credited: int
    debited: int
    spendable: int
    expires_at: datetime | None


@dataclass
class CustomerReport:
    """A customer's identities, products, orders and latest ledger rows."""

    user: Any
    identities: list[ExternalIdentity]
    products: list[ProductLine]
    orders: list[Order]
    transactions: list[Transaction]


def _order_link(order_id: Any) -> Link:
    return Link(gettext("Order #%(id)s") % {"id": order_id}, admin_url("billable.order", order_id))


def related_document(tx: Transaction) -> Link | None:
    """What a transaction points at (its generic relation) without loading the object."""
    if not tx.object_id:
        return None
    ct = tx.content_type
    if ct is None:
        return Link(str(tx.object_id))
    return Link(f"{ct.name} #{tx.object_id}", admin_url(f"{ct.app_label}.{ct.model}",
                                                       tx.object_id))


def batch_source(batch: QuotaBatch) -> Link:
    """Where a batch came from: its order, else its offer, else a manual grant."""
    if batch.order_item_id is not None and batch.order_item is not None:
        order_id = batch.order_item.order_id
        return _order_link(order_id)
    if batch.source_offer is not None:
        offer = batch.source_offer
        return Link(f"{offer.name} ({offer.sku})", admin_url("billable.offer", offer.pk))
    return Link(gettext("Manual grant"))


def batch_state_label(batch: QuotaBatch, now: datetime) -> str:
    """The stored state, qualified when the spendability rule already says otherwise."""
    if batch.state != QuotaBatch.State.ACTIVE:
        return batch.get_state_display()
    if batch.expires_at is not None and batch.expires_at <= now:
        return gettext("Expired (expiry job pending)")
    if batch.valid_from > now:
        return gettext("Not yet valid")
    if batch.remaining_quantity == 0:
        return gettext("Exhausted")
    return batch.get_state_display()


def _signed_sums() -> dict[str, Any]:
    return {
        "credit": Coalesce(Sum("amount", filter=Q(direction=CREDIT)), Value(0)),
        "debit": Coalesce(Sum("amount", filter=Q(direction=DEBIT)), Value(0)),
    }


def _sources(user_id: Any, product: Product, first_credit: dict[Any, str]) -> list[BatchSource]:
    now = timezone.now()
    batches = (
        QuotaBatch.objects.filter(user_id=user_id, product=product)
        .select_related("source_offer", "order_item")
        .order_by("created_at", "id")
    )
    return [
        BatchSource(batch=b, source=batch_source(b), action_type=first_credit.get(b.pk, "—"),
                    spendable=b.is_spendable(now), state_label=batch_state_label(b, now))
        for b in batches
    ]


def _first_credits(user_id: Any, product: Product) -> dict[Any, str]:
    credits = (
        Transaction.objects.filter(user_id=user_id, quota_batch__product=product,
                                   direction=CREDIT)
        .order_by("-created_at", "-id")
        .values_list("quota_batch_id", "action_type")
    )
    return dict(credits)  # oldest wins: later pairs overwrite earlier ones


def build_product_report(user_id: Any, product: Product, *,
                         limit: int = REPORT_ROW_LIMIT) -> ProductReport:
    """History of ``product`` for one user with a running balance (oldest row first)."""
    report = ProductReport(user_id=user_id, product=product)
    ledger = Transaction.objects.filter(user_id=user_id, quota_batch__product=product)
    totals = ledger.aggregate(**_signed_sums())
    report.total_credit, report.total_debit = totals["credit"], totals["debit"]
    window = list(
        ledger.select_related("content_type", "quota_batch").order_by("-created_at", "-id")
        [:limit]
    )[::-1]
    report.folded_rows = max(ledger.count() - len(window), 0) if len(window) == limit else 0
    in_window = sum(t.amount if t.direction == CREDIT else -t.amount for t in window)
    report.opening_balance = report.ledger_balance - in_window
    balance = report.opening_balance
    for tx in window:
        credit = tx.amount if tx.direction == CREDIT else 0
        debit = tx.amount if tx.direction == DEBIT else 0
        balance += credit - debit
        report.rows.append(LedgerRow(transaction=tx, credit=credit, debit=debit,
                                     balance=balance, document=related_document(tx)))
    report.sources = _sources(user_id, product, _first_credits(user_id, product))
    report.spendable = spendable_units(user_id, product)
    return report


def spendable_units(user_id: Any, product: Product | None = None) -> int:
    """Units spendable right now (the services' rule), for one product or all products."""
    batches = QuotaBatch.objects.filter(user_id=user_id).spendable()
    if product is not None:
        batches = batches.filter(product=product)
    return int(batches.aggregate(total=Coalesce(Sum("remaining_quantity"), Value(0)))["total"])


def customer_products(user_id: Any) -> list[ProductLine]:
    """Per product: units credited and debited, spendable now, latest expiry (None = never)."""
    grouped: Any = (
        Transaction.objects.filter(user_id=user_id)
        .order_by()
        .values("quota_batch__product")
        .annotate(**_signed_sums())
    )
    ledger: list[dict[str, Any]] = list(grouped)
    live_rows: list[dict[str, Any]] = list(
        QuotaBatch.objects.filter(user_id=user_id).spendable()
        .order_by()
        .values("product")
        .annotate(units=Sum("remaining_quantity"), expires=Max("expires_at"),
                  forever=Max(Case(When(expires_at__isnull=True, then=Value(1)),
                                   default=Value(0), output_field=IntegerField())))
    )
    live = {row["product"]: row for row in live_rows}
    products = Product.objects.in_bulk([row["quota_batch__product"] for row in ledger])
    lines = []
    for row in ledger:
        now_row = live.get(row["quota_batch__product"], {})
        lines.append(ProductLine(
            product=products[row["quota_batch__product"]], credited=row["credit"],
            debited=row["debit"], spendable=now_row.get("units") or 0,
            expires_at=None if now_row.get("forever") else now_row.get("expires"),
        ))
    return sorted(lines, key=lambda line: line.product.name)


def build_customer_report(user: Any, *, recent: int = 50) -> CustomerReport:
    """Everything billing knows about one account, on one page."""
    return CustomerReport(
        user=user,
        identities=list(ExternalIdentity.objects.filter(user=user).order_by("provider", "id")),
        products=customer_products(user.pk),
        orders=list(Order.objects.filter(user=user).prefetch_related("items__offer")[:recent]),
        transactions=list(
            Transaction.objects.filter(user=user)
            .select_related("quota_batch__product", "content_type")
            .order_by("-created_at", "-id")[:recent]
        ),
    )


@dataclass
class ProductActivity:
    """Latest sources (batches, any user) and debits of one product, for its change page."""

    sources: list[BatchSource]
    debits: list[Transaction]
    spendable: int


def build_product_activity(product: Product, *, limit: int = 50) -> ProductActivity:
    """The product-wide report shown on the Product change form (newest first)."""
    now = timezone.now()
    batches = (
        QuotaBatch.objects.filter(product=product)
        .select_related("user", "source_offer", "order_item")
        .order_by("-created_at", "-id")[:limit]
    )
    first_credit = dict(
        Transaction.objects.filter(quota_batch__in=[b.pk for b in batches], direction=CREDIT)
        .order_by("-created_at", "-id")
        .values_list("quota_batch_id", "action_type")
    )
    sources = [
        BatchSource(batch=b, source=batch_source(b), action_type=first_credit.get(b.pk, "—"),
                    spendable=b.is_spendable(now), state_label=batch_state_label(b, now))
        for b in batches
    ]
    debits = list(
        Transaction.objects.filter(quota_batch__product=product, direction=DEBIT)
        .select_related("user", "content_type")
        .order_by("-created_at", "-id")[:limit]
    )
    total = QuotaBatch.objects.filter(product=product).spendable().aggregate(
        total=Coalesce(Sum("remaining_quantity"), Value(0)))["total"]
    return ProductActivity(sources=sources, debits=debits, spendable=int(total))


@dataclass(frozen=True)
class PaymentLine:
    """One payment of a customer: a paid (or refunded) order, or a provider payment record."""

    when: datetime | None
    amount: str
    method: str
    reference: str
    status: str
    link: Link
    order: Link | None = None


def _provider_payments(user_id: Any, limit: int) -> list[PaymentLine]:
    """Telegram Stars payments recorded by ``bot_kit`` (when it is installed)."""
    if not apps.is_installed("bot_kit"):
        return []
    model = apps.get_model("bot_kit", "TelegramPayment")
    rows = model.objects.filter(user_id=user_id).order_by("-created_at", "-id")[:limit]
    return [
        PaymentLine(when=row.created_at, amount=money(row.total_amount, row.currency),
                    method="telegram_stars", reference=row.charge_id,
                    status=row.get_status_display(),
                    link=Link(gettext("Payment #%(id)s") % {"id": row.pk},
                              admin_url("bot_kit.telegrampayment", row.pk)),
                    order=(_order_link(row.order_id)
                           if row.order_id else None))
        for row in rows
    ]


def customer_payments(user_id: Any, *, limit: int = 20) -> list[PaymentLine]:
    """Newest first: the provider's payment records, then paid/refunded orders not covered by
    one (an order confirmed by a webhook or in the admin has only its payment fields)."""
    provider = _provider_payments(user_id, limit)
    covered = {line.reference for line in provider}
    orders = (Order.objects.filter(user_id=user_id, paid_at__isnull=False)
              .order_by("-paid_at", "-id")[:limit])
    lines = provider + [
        PaymentLine(when=order.paid_at, amount=money(order.total_amount, order.currency),
                    method=order.payment_method or "—", reference=order.payment_id or "",
                    status=order.get_status_display(),
                    link=_order_link(order.pk),
                    order=_order_link(order.pk))
        for order in orders if not order.payment_id or order.payment_id not in covered
    ]
    epoch = datetime.min.replace(tzinfo=timezone.get_current_timezone())
    lines.sort(key=lambda line: line.when or epoch, reverse=True)
    return lines[:limit]
