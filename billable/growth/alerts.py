"""Alerts: find customers running low on a product or holding a batch that expires soon.

:meth:`AlertService.scan` is the scheduled job (``manage.py billable_alerts``, Celery task
``billable.alerts``). For every active :class:`~billable.models.ProductAlert`:

* **low balance** (``quantity`` products) — a customer's spendable balance is at or below the
  threshold: ``low_balance_units``, or ``low_balance_percent`` of the customer's most recent
  grant of the product (the larger when both are set). The notice is keyed on that most recent
  grant, so it is recorded once per crossing: never again while the balance stays low, again
  only after a top-up (a new grant) is spent down. A balance that was topped up above the
  threshold before the scan ran is not low: nothing is sent.
* **expires soon** — an active batch with units left (for ``period`` / ``unlimited``
  products: the last batch of the customer's running access) expires within ``expiry_days``.
  Once per batch.

Each new notice is one row (UNIQUE ``(kind, batch)`` is the guard, so concurrent scans record
it once) and one signal after commit: ``quota_low`` or ``batch_expiring``. The bot kit sends
the pending notices as chat messages (``bot_kit.alerts``) unless the customer opted out
(:meth:`AlertService.set_enabled`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from billable.exceptions import UserNotFound
from billable.models import (
    AlertNotice,
    ExternalIdentity,
    NotificationPreference,
    Offer,
    Product,
    ProductAlert,
    QuotaBatch,
)
from billable.services import IdentityService
from billable.signals import batch_expiring, quota_low, send_on_commit
from billable.validation import coerce_pk


@dataclass(frozen=True)
class ClaimedNotice:
    """A notice claimed for sending and its owner's identity on the chat provider."""

    notice: AlertNotice
    identity: ExternalIdentity


@dataclass(frozen=True)
class ScanResult:
    """Notices recorded by one scan."""

    low_balance: int = 0
    expiring: int = 0


def threshold_for(rule: ProductAlert, last_grant: int) -> int | None:
    """The low-balance threshold for a customer whose last grant was ``last_grant`` units."""
    candidates = []
    if rule.low_balance_units is not None:
        candidates.append(int(rule.low_balance_units))
    if rule.low_balance_percent is not None:
        candidates.append(math.floor(last_grant * int(rule.low_balance_percent) / 100))
    return max(candidates) if candidates else None


def _record(kind: str, batch: QuotaBatch, *, balance: int, threshold: int) -> AlertNotice | None:
    try:
        with transaction.atomic():
            return AlertNotice.objects.create(
                kind=kind, user_id=batch.user_id, product_id=batch.product_id, batch=batch,
                balance=balance, threshold=threshold, expires_at=batch.expires_at)
    except IntegrityError:
        return None


def _scan_low(rule: ProductAlert, now: datetime) -> int:
    product = rule.product
    if product.product_type != Product.ProductType.QUANTITY:
        return 0
    batches = QuotaBatch.objects.filter(product=product)
    balances = dict(batches.spendable(now).order_by().values("user_id")
                    .annotate(total=Sum("remaining_quantity")).values_list("user_id", "total"))
    last_by_user = _last_grants(batches, now)
    found = 0
    already = set(AlertNotice.objects.filter(kind=AlertNotice.Kind.LOW_BALANCE,
                                             batch_id__in=[b.pk for b in last_by_user.values()])
                  .values_list("batch_id", flat=True))
    for user_id, last in last_by_user.items():
        if last.pk in already:
            continue
        balance = int(balances.get(user_id) or 0)
        threshold = threshold_for(rule, last.initial_quantity)
        if threshold is None or balance > threshold:
            continue
        notice = _record(AlertNotice.Kind.LOW_BALANCE, last, balance=balance, threshold=threshold)
        if notice is not None:
            found += 1
            send_on_commit(quota_low, sender=AlertService, notice=notice, user_id=user_id,
                           product_key=product.product_key, balance=balance,
                           threshold=threshold)
    return found


def _last_grants(batches: Any, now: datetime) -> dict[Any, QuotaBatch]:
    """Each customer's most recent grant of the product (one query, newest first)."""
    result: dict[Any, QuotaBatch] = {}
    for batch in batches.filter(valid_from__lte=now).order_by("user_id", "-created_at", "-id"):
        result.setdefault(batch.user_id, batch)
    return result


def _scan_expiring(rule: ProductAlert, now: datetime) -> int:
    product = rule.product
    horizon = now + timedelta(days=int(rule.expiry_days or 0))
    soon = (QuotaBatch.objects
            .filter(product=product, state=QuotaBatch.State.ACTIVE, remaining_quantity__gt=0,
                    expires_at__gt=now, expires_at__lte=horizon)
            .exclude(alert_notices__kind=AlertNotice.Kind.EXPIRING))
    found = 0
    for batch in soon.order_by("expires_at", "id"):
        if product.product_type != Product.ProductType.QUANTITY and QuotaBatch.objects.filter(
                user_id=batch.user_id, product=product, state=QuotaBatch.State.ACTIVE,
                expires_at__gt=batch.expires_at).exists():
            continue  # access continues in a later batch: nothing ends yet
        notice = _record(AlertNotice.Kind.EXPIRING, batch, balance=batch.remaining_quantity,
                         threshold=int(rule.expiry_days or 0))
        if notice is not None:
            found += 1
            send_on_commit(batch_expiring, sender=AlertService, notice=notice,
                           user_id=batch.user_id, product_key=product.product_key,
                           batch_id=batch.pk, expires_at=batch.expires_at)
    return found


class AlertService:
    """The alert scan and the per-customer opt-out."""

    @classmethod
    def scan(cls, *, now: datetime | None = None) -> ScanResult:
        """Record (and signal) every new low-balance and expiry notice; see the module."""
        now = now or timezone.now()
        low = expiring = 0
        for rule in ProductAlert.objects.filter(is_active=True, product__is_active=True
                                                ).select_related("product"):
            if rule.low_balance_units is not None or rule.low_balance_percent is not None:
                low += _scan_low(rule, now)
            if rule.expiry_days:
                expiring += _scan_expiring(rule, now)
        return ScanResult(low_balance=low, expiring=expiring)

    @classmethod
    async def ascan(cls, *, now: datetime | None = None) -> ScanResult:
        """Async twin of :meth:`scan`."""
        return await sync_to_async(cls.scan)(now=now)

    @classmethod
    def claim_notices(cls, *, provider: str, limit: int) -> list[ClaimedNotice]:
        """Claim up to ``limit`` pending notices, oldest first: each one to send, with the
        owner's identity on ``provider`` (its ``external_id`` is the chat id).

        A notice of an opted-out customer, or of one without a numeric chat id on
        ``provider``, is marked ``skipped``; the others are marked ``sent`` before they are
        returned. Each notice is claimed once, also by concurrent senders (a conditional
        ``pending → state`` update).
        """
        pending = AlertNotice.objects.filter(delivery=AlertNotice.Delivery.PENDING)
        claimed: list[ClaimedNotice] = []
        for notice in pending.select_related("product__alert_rule__buy_offer", "batch").order_by(
                "created_at", "id")[:limit]:
            owner = notice.batch.user_id  # the batch's owner now (a merge may have moved it)
            identity = IdentityService.first_identity(owner, provider)
            chat = identity.external_id if identity is not None else ""
            state = (AlertNotice.Delivery.SKIPPED if not cls.is_enabled(owner)
                     or not chat.isdigit() else AlertNotice.Delivery.SENT)
            with transaction.atomic():
                won = AlertNotice.objects.filter(
                    pk=notice.pk, delivery=AlertNotice.Delivery.PENDING).update(
                    delivery=state, delivered_at=timezone.now())
            if won and identity is not None and state == AlertNotice.Delivery.SENT:
                claimed.append(ClaimedNotice(notice, identity))
        return claimed

    @classmethod
    def mark_failed(cls, notice_id: Any) -> None:
        """A claimed notice could not be delivered (the chat refused the message)."""
        AlertNotice.objects.filter(pk=notice_id).update(delivery=AlertNotice.Delivery.FAILED)

    @classmethod
    def buy_offers(cls, notice: AlertNotice, skus: Iterable[str]) -> list[Offer]:
        """The offers a notice's buy button sells: the rule's active ``buy_offer``, else the
        active offers among ``skus`` (in ``skus`` order) that contain the notice's product."""
        rule = getattr(notice.product, "alert_rule", None)
        if rule is not None and rule.buy_offer is not None and rule.buy_offer.is_active:
            return [rule.buy_offer]
        wanted = list(skus)
        offers = Offer.objects.filter(sku__in=wanted, is_active=True,
                                      items__product=notice.product).distinct()
        found = {offer.sku: offer for offer in offers}
        return [found[sku] for sku in wanted if sku in found]

    @classmethod
    def is_enabled(cls, user_id: Any) -> bool:
        """Whether ``user_id`` gets alert messages (on unless they opted out)."""
        pk = coerce_pk(getattr(user_id, "pk", user_id))
        if pk is None:
            return True
        value = NotificationPreference.objects.filter(user_id=pk).values_list(
            "alerts_enabled", flat=True).first()
        return True if value is None else bool(value)

    @classmethod
    async def ais_enabled(cls, user_id: Any) -> bool:
        """Async twin of :meth:`is_enabled`."""
        return await sync_to_async(cls.is_enabled)(user_id)

    @classmethod
    def set_enabled(cls, user_id: Any, enabled: bool) -> bool:
        """Turn alert messages on or off for ``user_id``; returns the new value.

        ``UserNotFound`` for an id that names no account (never a foreign-key error at commit).
        """
        pk = coerce_pk(getattr(user_id, "pk", user_id))
        if pk is None or not get_user_model().objects.filter(pk=pk).exists():
            raise UserNotFound(f"User {user_id} not found")
        NotificationPreference.objects.update_or_create(
            user_id=pk, defaults={"alerts_enabled": bool(enabled), "updated_at": timezone.now()})
        return bool(enabled)

    @classmethod
    async def aset_enabled(cls, user_id: Any, enabled: bool) -> bool:
        """Async twin of :meth:`set_enabled`."""
        return await sync_to_async(cls.set_enabled)(user_id, enabled)


__all__ = ["AlertService", "ClaimedNotice", "ScanResult", "threshold_for"]
