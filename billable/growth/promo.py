"""Promo codes: redeem a code for an offer, or for a discounted order, within its limits.

Limits and how they are enforced (one place each):

* **total uses** — ``PromoCode.uses_count`` moves only under the code's row lock
  (``select_for_update``), and a CHECK constraint keeps it ``<= max_uses``;
* **once per customer** — a UNIQUE ``(code, identity_type, identity_hash)`` row per identity of
  the customer: the account (``user:<id>``), every external identity it holds and the
  identities the caller names (a Telegram id), hashed like trials. A merged customer keeps
  every identity it absorbed, so a code used before a merge stays used after it;
* **first-time buyers** — no paid or refunded order; **valid from / until** and **active** —
  checked under the lock.

A *grant* code grants its offer in the same transaction (``source="promo"``). A *discount*
code creates a pending order priced at the discounted amount and **reserves** one use; paying
the order (any payment path) grants the full offer and turns the reservation into a
redemption; an order that is cancelled, or still unpaid after ``BILLABLE_PROMO_RESERVATION_TTL``
seconds, is cancelled and gives the use back (:meth:`PromoService.release_stale`).

Lock order: the code row, then the customer's account, then the use rows (redemption and the
UNIQUE identity rows) and the grant — accounts before unique-key rows, the global order of
``billable.ledger.locks``. The payment path locks the order and never the code, so redeeming
and paying cannot deadlock. The account used to be locked only inside the grant (of a period
offer), after the identity rows: a customer merge, which holds both accounts and then records
the merged-away account's uses for the target, deadlocked with a redemption by the target, and
the redemption failed with ``DatabaseBusy``. Code and redemption rows are locked ``FOR NO KEY
UPDATE`` (only counters and states change): a merge that records a use inserts a row
referencing them, which takes ``KEY SHARE`` — compatible with ``NO KEY UPDATE``, blocked by
``FOR UPDATE``, which closed a second deadlock cycle with the same merge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from billable.conf import billable_settings
from billable.exceptions import (
    InvalidInput,
    OfferNotFound,
    OrderStateError,
    PromoAlreadyUsed,
    PromoExhausted,
    PromoExpired,
    PromoNotApplicable,
    PromoNotFirstTime,
    PromoUnknown,
    UserNotFound,
)
from billable.ledger.locks import lock_users
from billable.ledger.retry import retrying
from billable.models import (
    ExternalIdentity,
    Offer,
    Order,
    OrderItem,
    PromoCode,
    PromoIdentityUse,
    PromoRedemption,
    QuotaBatch,
    TrialHistory,
)
from billable.services import OrderService, TransactionService
from billable.signals import promo_redeemed, send_on_commit
from billable.validation import coerce_pk, metadata_dict, safe_text

#: Currencies without minor units: a discounted price is a whole number, at least 1.
WHOLE_UNIT_CURRENCIES = frozenset({"XTR", "CLP", "ISK", "JPY", "KRW", "PYG", "UGX", "VND"})
PROMO_SOURCE = "promo"
MAX_CODE_LENGTH = 64


@dataclass(frozen=True)
class Quote:
    """What a code gives for an offer: list price, price to pay, discount (same currency)."""

    promo: PromoCode
    offer: Offer
    list_price: Decimal
    price: Decimal
    currency: str

    @property
    def discount(self) -> Decimal:
        return self.list_price - self.price


@dataclass
class Redemption:
    """Outcome of :meth:`PromoService.redeem`: the use, and the batches granted (grant codes)
    or the pending discounted order to pay (discount codes)."""

    redemption: PromoRedemption
    batches: list[QuotaBatch] = field(default_factory=list)
    order: Order | None = None

    @property
    def code(self) -> str:
        return self.redemption.promo.code


def normalize_code(code: Any) -> str:
    """``" spring-10 "`` → ``"SPRING-10"``; a blank or oversized code is ``PromoUnknown``."""
    if not isinstance(code, str) or not code.strip() or len(code.strip()) > MAX_CODE_LENGTH:
        raise PromoUnknown("Unknown promo code")
    return safe_text(code.strip().upper(), field="code")


def discounted_price(promo: PromoCode, price: Decimal, currency: str) -> Decimal:
    """``price`` after ``promo``'s discount, rounded half-up to the currency's smallest unit and
    never below one smallest unit (whole Stars for ``XTR``, at least 1)."""
    unit = Decimal(1) if currency.upper() in WHOLE_UNIT_CURRENCIES else Decimal("0.01")
    if promo.kind == PromoCode.Kind.PERCENT:
        after = price * (100 - int(promo.percent_off or 0)) / 100
    elif promo.kind == PromoCode.Kind.FIXED:
        after = price - Decimal(promo.amount_off or 0)
    else:
        after = price
    after = after.quantize(unit, rounding=ROUND_HALF_UP)
    return max(after, unit)


def _user_pk(user_id: Any) -> int:
    pk = coerce_pk(getattr(user_id, "pk", user_id))
    if pk is None or not get_user_model().objects.filter(pk=pk).exists():
        raise UserNotFound(f"User {user_id} not found")
    return pk


def identity_pairs(user_pk: int, identities: Any = None) -> list[tuple[str, str]]:
    """Hashed identities one use of a code records: ``user:<id>``, the customer's external
    identities and the ones given (``{"telegram": 42}``)."""
    if identities is not None and not isinstance(identities, dict):
        raise InvalidInput("identities must be an object of {type: value}")
    pairs = TrialHistory.identity_pairs(identities or {})
    own = ExternalIdentity.objects.filter(user_id=user_pk).values_list("provider", "external_id")
    pairs += [(provider, TrialHistory.generate_identity_hash(value)) for provider, value in own]
    pairs.append(("user", TrialHistory.generate_identity_hash(str(user_pk))))
    if any(len(kind) > 50 for kind, _ in pairs):
        raise InvalidInput("identity type must be at most 50 characters")
    return list(dict.fromkeys(pairs))


def _check_window(promo: PromoCode, now: datetime) -> None:
    if not promo.is_active or (promo.valid_from and now < promo.valid_from) or (
            promo.valid_until and now >= promo.valid_until):
        raise PromoExpired("This promo code has expired")


def _check_customer(promo: PromoCode, user_pk: int, pairs: list[tuple[str, str]]) -> None:
    if promo.first_time_only and Order.objects.filter(
            user_id=user_pk, status__in=[Order.Status.PAID, Order.Status.REFUNDED]).exists():
        raise PromoNotFirstTime("This promo code is for first-time buyers only")
    if promo.once_per_customer and _used_by(promo, pairs):
        raise PromoAlreadyUsed("You have already used this promo code")


def _used_by(promo: PromoCode, pairs: list[tuple[str, str]]) -> bool:
    query = Q()
    for kind, digest in pairs:
        query |= Q(identity_type=kind, identity_hash=digest)
    return PromoIdentityUse.objects.filter(query, promo=promo).exists()


def _own_offer(promo: PromoCode, missing: str) -> Offer:
    """The code's own offer; a deactivated offer is retired, and so are the codes naming it."""
    if promo.offer is None:
        raise PromoNotApplicable(missing)
    if not promo.offer.is_active:
        raise PromoNotApplicable("The offer of this promo code is no longer available")
    return promo.offer


def _named_offer(sku: Any) -> Offer | None:
    """The active offer the caller names by ``sku``; ``None`` when no sku is given."""
    if sku is None or (isinstance(sku, str) and not sku.strip()):
        return None
    offer = Offer.objects.filter(sku=safe_text(str(sku).strip(), field="sku"),
                                 is_active=True).first()
    if offer is None:
        raise OfferNotFound(f"Offer not found for sku: '{sku}'")
    return offer


def _target_offer(promo: PromoCode, sku: Any) -> Offer:
    """The offer a use of ``promo`` is for. A named ``sku`` is looked up first for every kind
    (unknown: ``OfferNotFound``); a grant code then accepts only its own offer."""
    named = _named_offer(sku)
    if promo.kind == PromoCode.Kind.GRANT:
        own = _own_offer(promo, "This promo code grants nothing")
        if named is not None and named.pk != own.pk:
            raise PromoNotApplicable("This promo code does not apply to this offer")
        return own
    if named is None:
        return _own_offer(promo, "Name the offer to discount (sku)")
    offer = named
    if promo.offer_id is not None and promo.offer_id != offer.pk:
        raise PromoNotApplicable("This promo code does not apply to this offer")
    if promo.kind == PromoCode.Kind.FIXED and promo.currency and (
            promo.currency != offer.currency.upper()):
        raise PromoNotApplicable("This promo code does not apply to this currency")
    if offer.price <= 0:
        raise PromoNotApplicable("Free offers cannot be discounted")
    return offer


def _quote(promo: PromoCode, offer: Offer) -> Quote:
    price = (offer.price if promo.kind == PromoCode.Kind.GRANT
             else discounted_price(promo, offer.price, offer.currency))
    return Quote(promo=promo, offer=offer, list_price=offer.price, price=price,
                 currency=offer.currency.upper())


def _take_use(promo: PromoCode, user_pk: int, pairs: list[tuple[str, str]],
              redemption: PromoRedemption) -> None:
    """Count one use and record the identities (the caller holds the code's row lock)."""
    if promo.max_uses is not None and promo.uses_count >= promo.max_uses:
        raise PromoExhausted("This promo code has been used up")
    if promo.once_per_customer:
        try:
            with transaction.atomic():
                PromoIdentityUse.objects.bulk_create([
                    PromoIdentityUse(promo=promo, redemption=redemption, identity_type=kind,
                                     identity_hash=digest) for kind, digest in pairs])
        except IntegrityError:
            raise PromoAlreadyUsed("You have already used this promo code") from None
    promo.uses_count += 1
    promo.save(update_fields=["uses_count"])


class PromoService:
    """Quote, redeem, settle and release promo codes (sync + async twins)."""

    @classmethod
    def get_code(cls, code: Any) -> PromoCode:
        """The code (any case); ``PromoUnknown`` when there is none."""
        promo = PromoCode.objects.select_related("offer").filter(
            code=normalize_code(code)).first()
        if promo is None:
            raise PromoUnknown("Unknown promo code")
        return promo

    @classmethod
    def quote(cls, code: Any, *, user_id: Any = None, sku: Any = None,
              identities: dict[str, Any] | None = None) -> Quote:
        """What ``code`` gives (for ``sku`` when it is a discount), checking every limit for
        ``user_id`` when given; raises the error a redemption would raise. Writes nothing."""
        promo = cls.get_code(code)
        _check_window(promo, timezone.now())
        offer = _target_offer(promo, sku)
        if promo.max_uses is not None and promo.uses_count >= promo.max_uses:
            raise PromoExhausted("This promo code has been used up")
        if user_id is not None:
            pk = _user_pk(user_id)
            _check_customer(promo, pk, identity_pairs(pk, identities))
        return _quote(promo, offer)

    @classmethod
    async def aquote(cls, code: Any, *, user_id: Any = None, sku: Any = None,
                     identities: dict[str, Any] | None = None) -> Quote:
        """Async twin of :meth:`quote`."""
        return await sync_to_async(cls.quote)(code, user_id=user_id, sku=sku,
                                              identities=identities)

    @classmethod
    @retrying
    def redeem(cls, code: Any, *, user_id: Any, sku: Any = None,
               identities: dict[str, Any] | None = None,
               metadata: dict[str, Any] | None = None) -> Redemption:
        """Use ``code`` for ``user_id``: grant its offer, or create the discounted order of
        ``sku`` (default: the code's offer) and reserve the use until it is paid.

        Raises ``PromoUnknown``, ``PromoExpired``, ``PromoExhausted``, ``PromoAlreadyUsed``,
        ``PromoNotFirstTime``, ``PromoNotApplicable``, ``OfferNotFound``, ``UserNotFound``;
        nothing is written when any of them is raised.
        """
        normalized = normalize_code(code)
        pk = _user_pk(user_id)
        meta = metadata_dict(metadata)
        pairs = identity_pairs(pk, identities)
        with transaction.atomic():
            promo = (PromoCode.objects.select_for_update(no_key=True).filter(code=normalized)
                     .first())
            if promo is None:
                raise PromoUnknown("Unknown promo code")
            lock_users([pk])  # before the use rows: a merge holds accounts, then writes uses
            _check_window(promo, timezone.now())
            offer = _target_offer(promo, sku)
            _check_customer(promo, pk, pairs)
            quote = _quote(promo, offer)
            redemption = PromoRedemption.objects.create(
                promo=promo, user_id=pk, offer=offer, list_price=quote.list_price,
                price=quote.price, currency=quote.currency, metadata=meta)
            _take_use(promo, pk, pairs, redemption)
            if promo.is_discount:
                return Redemption(redemption, order=_discounted_order(redemption, pk, meta))
            return Redemption(redemption, batches=_grant(cls, redemption, pk, meta))

    @classmethod
    async def aredeem(cls, code: Any, *, user_id: Any, sku: Any = None,
                      identities: dict[str, Any] | None = None,
                      metadata: dict[str, Any] | None = None) -> Redemption:
        """Async twin of :meth:`redeem`."""
        return await sync_to_async(cls.redeem)(code, user_id=user_id, sku=sku,
                                               identities=identities, metadata=metadata)

    @classmethod
    def get_redemption(cls, redemption_id: Any) -> PromoRedemption | None:
        """The redemption ``redemption_id`` (e.g. behind a discounted invoice), or ``None``."""
        return PromoRedemption.objects.filter(pk=redemption_id or 0).first()

    @classmethod
    def check_reservation(cls, redemption_id: Any, *, order_id: Any) -> str | None:
        """Re-check a discounted order's reservation before payment (pre-checkout).

        ``None`` when it still holds; else the error code (``promo_expired``) to refuse with.
        """
        pk = coerce_pk(redemption_id)
        redemption = (PromoRedemption.objects.select_related("promo").filter(pk=pk).first()
                      if pk else None)
        if redemption is None or redemption.order_id != coerce_pk(order_id):
            return PromoUnknown.code
        if redemption.status == PromoRedemption.Status.RELEASED:
            return PromoExpired.code
        promo = redemption.promo
        now = timezone.now()
        if not promo.is_active or (promo.valid_until and now >= promo.valid_until):
            return PromoExpired.code
        return None

    @classmethod
    def settle_order(cls, order_id: Any) -> PromoRedemption | None:
        """Mark the reservation of a paid discounted order redeemed (once); sends
        ``promo_redeemed`` after commit. Called on ``order_confirmed`` and by the sweep."""
        pk = coerce_pk(getattr(order_id, "pk", order_id))
        with transaction.atomic():
            redemption = (PromoRedemption.objects.select_for_update(no_key=True)
                          .select_related("promo").filter(order_id=pk).first() if pk else None)
            if redemption is None or redemption.status != PromoRedemption.Status.RESERVED:
                return redemption
            redemption.status = PromoRedemption.Status.REDEEMED
            redemption.redeemed_at = timezone.now()
            redemption.save(update_fields=["status", "redeemed_at"])
            send_on_commit(promo_redeemed, sender=cls, redemption=redemption,
                           user_id=redemption.user_id, code=redemption.promo.code)
        return redemption

    @classmethod
    def release_stale(cls, *, older_than: float | None = None,
                      now: datetime | None = None) -> int:
        """Settle paid reservations and give back the uses of discounted orders that were
        cancelled or are still unpaid after ``older_than`` seconds (default
        ``BILLABLE_PROMO_RESERVATION_TTL``; those orders are cancelled). Returns the count
        released."""
        ttl = billable_settings.BILLABLE_PROMO_RESERVATION_TTL if older_than is None else older_than
        cutoff = (now or timezone.now()) - timedelta(seconds=float(ttl))
        released = 0
        reserved = PromoRedemption.objects.filter(status=PromoRedemption.Status.RESERVED,
                                                  order__isnull=False)
        for red in reserved.select_related("order").order_by("pk"):
            order = red.order
            assert order is not None
            if order.status == Order.Status.PAID:
                cls.settle_order(order.pk)
                continue
            if order.status == Order.Status.PENDING and red.created_at > cutoff:
                continue
            try:
                with transaction.atomic():
                    OrderService.cancel_pending_order(order.pk, reason="promo reservation expired")
                    released += int(_release(red.pk))
            except OrderStateError:  # paid (or refunded) meanwhile: the use stays taken
                cls.settle_order(order.pk)
        return released


def _release(redemption_pk: int) -> bool:
    """Give one reserved use back (locks the code, then the redemption)."""
    code_pk = PromoRedemption.objects.filter(pk=redemption_pk).values_list("promo_id",
                                                                           flat=True).first()
    if code_pk is None:
        return False
    promo = PromoCode.objects.select_for_update(no_key=True).get(pk=code_pk)
    red = PromoRedemption.objects.select_for_update(no_key=True).get(pk=redemption_pk)
    if red.status != PromoRedemption.Status.RESERVED:
        return False
    red.status = PromoRedemption.Status.RELEASED
    red.released_at = timezone.now()
    red.save(update_fields=["status", "released_at"])
    PromoIdentityUse.objects.filter(redemption=red).delete()
    promo.uses_count = max(0, promo.uses_count - 1)
    promo.save(update_fields=["uses_count"])
    return True


def _grant(sender: Any, redemption: PromoRedemption, user_pk: int,
           meta: dict[str, Any]) -> list[QuotaBatch]:
    batches = TransactionService.grant_offer(
        user_pk, redemption.offer, source=PROMO_SOURCE,
        metadata={**meta, "promo_code": redemption.promo.code,
                  "promo_redemption_id": redemption.pk})
    redemption.status = PromoRedemption.Status.REDEEMED
    redemption.redeemed_at = timezone.now()
    redemption.save(update_fields=["status", "redeemed_at"])
    send_on_commit(promo_redeemed, sender=PromoService, redemption=redemption, user_id=user_pk,
                   code=redemption.promo.code)
    return batches


def _discounted_order(redemption: PromoRedemption, user_pk: int, meta: dict[str, Any]) -> Order:
    """A pending order of the offer at the discounted price (the snapshot keeps the full
    contents, so payment grants the whole offer)."""
    promo_meta = {"code": redemption.promo.code, "redemption_id": redemption.pk,
                  "list_price": str(redemption.list_price), "price": str(redemption.price)}
    order = OrderService.create_order(user_pk, [{"sku": redemption.offer.sku, "quantity": 1}],
                                      metadata={**meta, "promo": promo_meta})
    OrderItem.objects.filter(order=order).update(price=redemption.price)
    Order.objects.filter(pk=order.pk).update(total_amount=redemption.price)
    order.total_amount = redemption.price
    redemption.order = order
    redemption.save(update_fields=["order"])
    return order


__all__ = ["PROMO_SOURCE", "PromoService", "Quote", "Redemption", "discounted_price",
           "identity_pairs", "normalize_code"]
