"""The billing port: bot_kit's **only** door into billable.

Middlewares, payment handlers, command handlers and the paywall call these functions; nothing
else in ``bot_kit`` imports ``billable.models``, ``billable.services`` or the ledger engine, and
nothing in ``bot_kit`` runs SQL on billable's tables (``tests/architecture/
test_bot_kit_boundary.py`` enforces it). The port speaks in plain values and small frozen views
(:class:`Hold`, :class:`Account`, :class:`OfferView`, :class:`OrderView`) so a kit module never
needs a billable model class.

Every function delegates to billable's public service facades. Where the facade the port needs
does not exist yet, the current call is kept here (and only here), marked with a
``# port: switch to …`` comment, so the switch is made in this one file.

Sync functions exist for callers that are already in a worker thread or inside the kit's own
``transaction.atomic`` (payment confirmation writes the ``TelegramPayment`` row and pays the
order in one transaction); ``a``-prefixed twins are for handlers and middlewares.

Other kit modules may still import these framework-level billable modules (no models, no
engine): ``billable.exceptions``, ``billable.signals``, ``billable.metrics``, ``billable.logs``,
``billable.health``, ``billable.dashboard``, ``billable.tasks``.

billable's service modules load the models, so this module imports them on first use (Django's
app registry must be ready; ``import bot_kit.billing`` itself is safe before ``django.setup()``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from billable.exceptions import OrderStateError
from billable.signals import customers_merged

logger = logging.getLogger("bot_kit.billing")

#: How often a replayed hold whose first attempt failed is re-keyed and placed again.
MAX_HOLD_ATTEMPTS = 3


# ---------------------------------------------------------------------------------------------
# Holds (the gated path: hold → handler → settle or release)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hold:
    """The outcome of holding quota for one update.

    ``run`` is False for a redelivery whose first attempt was charged (``already_charged``) or is
    still running (``in_progress``), or after too many re-keyed attempts.
    """

    reservation_id: str | None
    run: bool
    reason: str = ""


def hold(user_id: int, product_key: str, amount: int, *, key: str, ttl: int | None = None,
         takeover: bool = False, metadata: Mapping[str, Any] | None = None) -> Hold:
    """Hold ``amount`` units of ``product_key`` under the idempotency ``key`` (sync).

    A fresh hold runs the handler. A replay of ``key`` (a redelivered update) is decided by the
    earlier hold's state: committed → not run again; held → not run again, unless ``takeover``
    (its attempt is dead: the hold is released and a fresh one placed); released → placed again
    under a derived key. A concurrent redelivery waits on the key's unique index, so it always
    sees the first attempt. Raises ``QuotaExhausted`` / ``InsufficientFunds`` on a low balance
    and ``InvalidInput`` on a bad key, amount or ttl.
    """
    # app registry: billable.services loads the models; imported on first use
    from billable.services import HoldService

    for _ in range(MAX_HOLD_ATTEMPTS):
        placed = HoldService.place(user_id, product_key, amount, idempotency_key=key, ttl=ttl,
                                   metadata=dict(metadata) if metadata else {"source": "bot_kit"},
                                   action_type="usage")
        if placed.fresh:
            return Hold(placed.reservation_id, run=True)
        if placed.state == "COMMITTED":
            return Hold(placed.reservation_id, run=False, reason="already_charged")
        if placed.state == "HELD":
            if not takeover:
                return Hold(placed.reservation_id, run=False, reason="in_progress")
            release(placed.reservation_id)
            logger.info("hold %s of a dead attempt released; %s runs again",
                        placed.reservation_id, key)
        key = f"{key}:retry:{placed.reservation_id}"
    return Hold(None, run=False, reason="too_many_attempts")


async def ahold(user_id: int, product_key: str, amount: int, *, key: str,
                ttl: int | None = None, takeover: bool = False,
                metadata: Mapping[str, Any] | None = None) -> Hold:
    """Async twin of :func:`hold` (one thread hop)."""
    return await sync_to_async(hold)(user_id, product_key, amount, key=key, ttl=ttl,
                                     takeover=takeover, metadata=metadata)


def settle(reservation_id: str | None) -> None:
    """Charge a hold after the handler returned (the balance is not read back)."""
    # app registry: billable.services loads the models; imported on first use
    from billable.services import HoldService

    HoldService.commit(reservation_id, read_balance=False)


async def asettle(reservation_id: str | None) -> None:
    """Async twin of :func:`settle` (one thread hop)."""
    await sync_to_async(settle)(reservation_id)


def release(reservation_id: str | None) -> bool:
    """Give a hold's units back (the handler raised); False when it was no longer held."""
    # app registry: billable.services loads the models; imported on first use
    from billable.services import HoldService

    return bool(HoldService.release(reservation_id))


async def arelease(reservation_id: str | None) -> bool:
    """Async twin of :func:`release`."""
    return await sync_to_async(release)(reservation_id)


# ---------------------------------------------------------------------------------------------
# Identity: Telegram user → billing account
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Account:
    """A billing account resolved from an external identity."""

    user: Any
    user_id: int


def current_owner(provider: str, external_id: str) -> Any:
    """The ``user_id`` the identity points to now, or ``None`` (one unique-index probe, run on
    every update of a cached user)."""
    # app registry: billable.services loads the models; imported on first use
    from billable.services import IdentityService

    return IdentityService.owner_of(provider, external_id)


async def acurrent_owner(provider: str, external_id: str) -> Any:
    """Async twin of :func:`current_owner` (one thread hop)."""
    return await sync_to_async(current_owner)(provider, external_id)


async def aresolve_account(provider: str, external_id: str,
                           profile: Mapping[str, Any]) -> Account:
    """The account behind ``(provider, external_id)``, created on first contact."""
    # app registry: billable.services loads the models; imported on first use
    from billable.services.identities import IdentityService

    resolved = await IdentityService.aresolve_user(
        provider=provider, external_id=external_id, profile=dict(profile))
    return Account(user=resolved.user, user_id=resolved.user.pk)


def user_id_for(external_id: int | str, provider: str = "telegram") -> int | None:
    """The billing user linked to an external id, if any (never creates)."""
    # app registry: billable.services loads the models; imported on first use
    from billable.services.identities import IdentityService

    user = IdentityService.get_user(external_id=str(external_id), provider=provider)
    return user.pk if user is not None else None


async def auser_id_for(external_id: int | str, provider: str = "telegram") -> int | None:
    """Async twin of :func:`user_id_for`."""
    return await sync_to_async(user_id_for)(external_id, provider)


def identity_profile(provider: str, external_id: str) -> dict[str, Any]:
    """The profile the identity middleware stored for ``(provider, external_id)`` (``{}`` when
    the identity is unknown)."""
    # app registry: models load on first use
    from billable.models import ExternalIdentity

    # port: switch to IdentityService (the identity's profile) when available
    identity = (ExternalIdentity.objects.filter(provider=provider, external_id=str(external_id))
                .only("metadata").first())
    return dict(getattr(identity, "metadata", None) or {})


def watch_identities(*, on_merge: Callable[[Iterable[Any]], None],
                     on_identity: Callable[[str, Any], None], uid: str) -> None:
    """Call ``on_merge(user_ids)`` after customers are merged and ``on_identity(external_id,
    user_id)`` after an identity row is saved or deleted (connected once per ``uid``)."""
    # app registry: models load on first use
    from billable.models import ExternalIdentity

    # port: switch to an identity-changed signal of billable when available

    def merged(sender: Any, target_user_id: Any = None, source_user_id: Any = None,
               **kwargs: Any) -> None:
        on_merge((target_user_id, source_user_id))

    def changed(sender: Any, instance: Any, **kwargs: Any) -> None:
        on_identity(str(instance.external_id), instance.user_id)

    customers_merged.connect(merged, weak=False, dispatch_uid=f"{uid}.merge")
    post_save.connect(changed, sender=ExternalIdentity, weak=False, dispatch_uid=f"{uid}.save")
    post_delete.connect(changed, sender=ExternalIdentity, weak=False,
                        dispatch_uid=f"{uid}.delete")


# ---------------------------------------------------------------------------------------------
# Identity change notices (LISTEN/NOTIFY): what keeps a cached identity fresh without a query
# ---------------------------------------------------------------------------------------------

def identity_notices_supported() -> bool:
    """Whether the database delivers identity change notices (PostgreSQL; no query)."""
    # app registry: billable.services loads the models; imported on first use
    from billable.services.identities import IdentityService

    return IdentityService.notices_supported()


async def alisten_identity_changes() -> Any:
    """A new async connection LISTENing to identity change notices (read ``notifies()``,
    close it when done)."""
    # app registry: billable.services loads the models; imported on first use
    from billable.services.identities import IdentityService

    return await IdentityService.alisten_changes()


def identity_change(payload: str) -> Any:
    """The notice a payload carries: ``.user_ids``, ``.identities`` ``(provider,
    external_id)`` and ``.everything``."""
    # app registry: billable.services loads the models; imported on first use
    from billable.services.identities import IdentityService

    return IdentityService.decode_change(payload)


# ---------------------------------------------------------------------------------------------
# Balances, spending, trials
# ---------------------------------------------------------------------------------------------

async def abalance(user_id: int, product_key: str) -> int:
    """Spendable units of ``product_key``."""
    # app registry: billable.services loads the models; imported on first use
    from billable.services import TransactionService

    return int(await TransactionService.aget_balance(user_id, product_key))


async def acheck(user_id: int, product_key: str) -> dict[str, Any]:
    """The ``check_quota`` dict (``can_use``, ``remaining``, ``message`` …)."""
    # app registry: billable.services loads the models; imported on first use
    from billable.services import TransactionService

    result: dict[str, Any] = await TransactionService.acheck_quota(user_id, product_key)
    return result


async def aconsume(user_id: int, product_key: str, *, amount: int = 1,
                   action_type: str = "usage", idempotency_key: str | None = None,
                   metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Spend ``amount`` units now; the ``consume_quota`` result dict."""
    # app registry: billable.services loads the models; imported on first use
    from billable.services import TransactionService

    result: dict[str, Any] = await TransactionService.aconsume_quota(
        user_id, product_key, action_type=action_type, amount=amount,
        idempotency_key=idempotency_key, metadata=metadata)
    return result


async def asummary(user_id: int) -> dict[str, dict[str, Any]]:
    """``{KEY: {total, used, remaining, is_unlimited, expiry}}`` for the whole wallet."""
    # app registry: billable.services loads the models; imported on first use
    from billable.services import BalanceService

    result: dict[str, dict[str, Any]] = await BalanceService.aget_balance_summary(user_id)
    return result


async def aclaim_trial(user_id: int, sku: str, *,
                       identities: Mapping[str, str] | None = None,
                       metadata: Mapping[str, Any] | None = None) -> list[Any]:
    """Claim the free offer ``sku`` once per identity; the granted batches. ``metadata`` is
    copied onto the ledger rows (e.g. the bot's ``bot_id``).

    Raises ``TrialAlreadyUsed`` (or another ``BillableError``) when it cannot be claimed.
    """
    # app registry: billable.services loads the models; imported on first use
    from billable.services.trials import TrialService

    result: list[Any] = await TrialService.aclaim_trial(
        user_id, sku, identities=dict(identities) if identities is not None else None,
        metadata=dict(metadata) if metadata is not None else None)
    return result


async def agranted_products(batches: Iterable[Any],
                            lang: str | None = None) -> list[tuple[str, int]]:
    """``[(product name in lang, units), …]`` of granted batches, sorted by name."""
    totals: dict[Any, int] = {}
    for batch in batches:
        totals[batch.product_id] = totals.get(batch.product_id, 0) + batch.initial_quantity
    # app registry: models load on first use
    from billable.models import Product

    # port: switch to the catalog facade (product names) when available
    names = {p.pk: p.localized_name(lang) async for p in Product.objects.filter(
        pk__in=list(totals))}
    return sorted(((str(names.get(pk, pk)), qty) for pk, qty in totals.items()),
                  key=lambda item: item[0])


async def aproduct_names(product_keys: Iterable[str],
                         lang: str | None = None) -> dict[str, str]:
    """``{KEY: display name in lang}`` of the known products among ``product_keys`` (the
    default-language name when not translated)."""
    keys = [str(k).upper() for k in product_keys]
    # app registry: models load on first use
    from billable.models import Product

    # port: switch to the catalog facade (product names) when available
    return {str(p.product_key): p.localized_name(lang) async for p in Product.objects.filter(
        product_key__in=keys)}


async def aproduct_name(product_key: str, lang: str | None = None) -> str:
    """The product's display name in ``lang`` (its key when unknown)."""
    names = await aproduct_names([product_key], lang)
    return names.get(product_key.upper()) or product_key


async def aentitlement_ends(user_id: int) -> dict[str, Any]:
    """``{product_key: end}`` of the current contiguous entitlement of every period /
    unlimited product the user holds now (``None`` = never ends).

    The batch covering now, extended by every later batch that starts before (or when) the
    previous one ends — a renewal paid ahead of time counts, a gap stops the chain.
    """
    # app registry: models load on first use
    from billable.models import Product, QuotaBatch

    # port: switch to BalanceService (entitlement ends) when available
    now = timezone.now()
    rows = QuotaBatch.objects.filter(
        user_id=user_id, state=QuotaBatch.State.ACTIVE,
        product__product_type__in=(Product.ProductType.PERIOD, Product.ProductType.UNLIMITED),
    ).exclude(expires_at__lte=now).order_by("valid_from").values_list(
        "product__product_key", "valid_from", "expires_at")
    spans: dict[str, list[tuple[Any, Any]]] = {}
    async for key, start, end in rows:
        spans.setdefault(str(key), []).append((start, end))
    ends: dict[str, Any] = {}
    for key, batches in spans.items():
        current = [end for start, end in batches if start <= now]
        if not current:
            continue
        end = None if None in current else max(current)
        for start, later in batches:  # ordered by start
            if start <= now:
                continue
            if end is None or start > end:  # never ends already, or a gap: the chain stops
                break
            end = None if later is None else max(end, later)
        ends[key] = end
    return ends


# ---------------------------------------------------------------------------------------------
# Offers
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OfferView:
    """What the kit shows and sells of an offer."""

    sku: str
    name: str
    price: Decimal
    currency: str
    description: str = ""
    is_active: bool = True
    translations: Mapping[str, Mapping[str, str]] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, offer: Any) -> OfferView:
        return cls(sku=offer.sku, name=offer.name, price=offer.price, currency=offer.currency,
                   description=offer.description or "", is_active=offer.is_active,
                   translations=dict(offer.translations or {}))

    def _translated(self, text: str, lang: str | None) -> str:
        code = str(lang or "").replace("_", "-").split("-")[0].strip().lower()
        texts = self.translations.get(code) if code else None
        value = texts.get(text, "") if isinstance(texts, Mapping) else ""
        return str(value).strip()

    def localized_name(self, lang: str | None) -> str:
        """The name in ``lang`` (falls back to ``name``, then to the SKU)."""
        return self._translated("name", lang) or self.name or self.sku

    def localized_description(self, lang: str | None) -> str:
        """The description in ``lang``; else the default one; else the localized name."""
        return (self._translated("description", lang)
                or (self.description if not self._translated("name", lang) else "")
                or self.localized_name(lang))


def _offers() -> Any:
    # app registry: models load on first use
    from billable.models import Offer

    # port: switch to the offer facade (resolve_offer / catalog selector) when available
    return Offer.objects


def offer(sku: Any, *, active_only: bool = True) -> OfferView | None:
    """The offer ``sku`` (an active one unless ``active_only`` is False), or ``None``."""
    query = _offers().filter(sku=str(sku or "").strip())
    if active_only:
        query = query.filter(is_active=True)
    found = query.first()
    return OfferView.of(found) if found is not None else None


def offers(skus: Iterable[str]) -> list[OfferView]:
    """The active offers among ``skus``, in the order of ``skus``."""
    wanted = [str(s).upper() for s in skus]
    found = {o.sku: o for o in _offers().filter(sku__in=wanted, is_active=True)}
    return [OfferView.of(found[s]) for s in wanted if s in found]


def offer_names(skus: Iterable[str], lang: str | None = None) -> dict[str, str]:
    """``{SKU: name in lang}`` of the known offers among ``skus`` (active or not)."""
    return {o.sku: OfferView.of(o).localized_name(lang)
            for o in _offers().filter(sku__in=[str(s) for s in skus])}


async def aoffer_name(sku: str, lang: str | None = None) -> str:
    """The offer's name in ``lang`` (its SKU when unknown)."""
    names = await sync_to_async(offer_names)([sku], lang)
    return names.get(sku) or sku


async def askus_with_product(skus: Iterable[str], product_key: str) -> set[str]:
    """The SKUs among ``skus`` whose offer contains ``product_key``."""
    wanted = [str(s).upper() for s in skus]
    if not wanted:
        return set()
    return {str(sku) async for sku in _offers().filter(
        sku__in=wanted, items__product__product_key=product_key.upper()
    ).values_list("sku", flat=True).distinct()}


async def aoffer_with_product(sku: str, product_key: str) -> OfferView | None:
    """The offer ``sku`` (active or not) when it contains ``product_key``, else ``None``."""
    found = await _offers().filter(
        sku=sku, items__product__product_key=product_key.upper()).afirst()
    return OfferView.of(found) if found is not None else None


def register_offer_validator(validator: Callable[[Any], None]) -> None:
    """Run ``validator(offer)`` in billable's ``Offer.clean`` (once, however often called)."""
    # app registry: models load on first use
    from billable.models.catalog import OFFER_VALIDATORS

    # port: switch to a catalog facade hook when available
    if validator not in OFFER_VALIDATORS:
        OFFER_VALIDATORS.append(validator)


# ---------------------------------------------------------------------------------------------
# Orders and payments (sync: the kit calls them inside its own payment transaction)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OrderView:
    """What the kit checks of an order. ``record`` is billable's ``Order`` row, handed on
    untouched to host hooks (``BillingConfig.precheckout_validator``)."""

    pk: int
    user_id: int | None
    status: str
    currency: str
    total_amount: Decimal
    is_pending: bool
    is_paid: bool
    record: Any = None
    #: The order's ``metadata`` (``bot_id``: the bot that sold it, see docs/multibot.md).
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> int:
        return self.pk

    @classmethod
    def of(cls, order: Any) -> OrderView:
        status = order.Status
        return cls(pk=order.pk, user_id=order.user_id, status=str(order.status),
                   currency=order.currency, total_amount=order.total_amount,
                   is_pending=order.status == status.PENDING,
                   is_paid=order.status == status.PAID, record=order,
                   metadata=dict(order.metadata) if isinstance(order.metadata, dict) else {})


def create_order(user_id: int, sku: str, *, metadata: dict[str, Any]) -> OrderView:
    """A pending order of one ``sku`` at the catalog price."""
    # app registry: billable.services loads the models; imported on first use
    from billable.services import OrderService

    order = OrderService.create_order(
        user_id, [{"sku": sku, "quantity": 1}], metadata=metadata)
    return OrderView.of(order)


def order(order_id: Any) -> OrderView | None:
    """The order ``order_id``, or ``None``."""
    # app registry: models load on first use
    from billable.models import Order

    # port: switch to the orders selector when available
    found = Order.objects.filter(pk=order_id).first()
    return OrderView.of(found) if found is not None else None


def pay_order(order_id: int, *, payment_id: str, payment_method: str) -> None:
    """``pending → paid`` exactly once per ``(payment_method, payment_id)``; grants the offer.

    Raises a ``BillableError`` when the order cannot be paid.
    """
    # app registry: billable.services loads the models; imported on first use
    from billable.services import OrderService

    OrderService.pay_order(order_id, payment_id=payment_id, payment_method=payment_method)


def refund_order(order_id: int, *, reason: str) -> bool:
    """Revoke what is left of a paid order's grants; False when it was not paid any more."""
    # app registry: billable.services loads the models; imported on first use
    from billable.services import OrderService

    try:
        OrderService.refund_paid_order(order_id, reason=reason)
    except OrderStateError:
        return False
    return True


def order_skus(order_id: int) -> list[str]:
    """The SKUs of an order's items, in item order."""
    # app registry: models load on first use
    from billable.models import OrderItem

    # port: switch to the orders selector when available
    return [str(sku) for sku in OrderItem.objects.filter(order_id=order_id)
            .order_by("pk").values_list("offer__sku", flat=True)]


def order_summary(order_id: int | None, lang: str | None = None) -> str:
    """``"10 predictions, …"``: the names of an order's offers (in ``lang`` when translated),
    in item order."""
    if order_id is None:
        return ""
    skus = order_skus(order_id)
    names = offer_names(skus, lang)
    return ", ".join(names.get(sku, sku) for sku in skus)


# ---------------------------------------------------------------------------------------------
# Growth (promo codes, gifts, alerts): billable.growth's workflows, for bot_kit/growth_billing.py
# ---------------------------------------------------------------------------------------------

def redeem_promo(code: str, *, user_id: int, telegram_user_id: int,
                 sku: str | None = None) -> Any:
    """``PromoService.redeem`` once per Telegram identity: the ``Redemption`` result."""
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.promo import PromoService

    return PromoService.redeem(code, user_id=user_id, sku=sku,
                               identities={"telegram": telegram_user_id},
                               metadata={"source": "telegram",
                                         "telegram_user_id": telegram_user_id})


def promo_code(code: str) -> Any:
    """The promo code row (raises ``PromoUnknown``)."""
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.promo import PromoService

    return PromoService.get_code(code)


def promo_reservation_problem(promo_id: int | None, *, order_id: int) -> str | None:
    """``None`` while the discounted order's promo reservation holds, else a reason code."""
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.promo import PromoService

    return PromoService.check_reservation(promo_id, order_id=order_id)


def promo_redemption(promo_id: int | None) -> Any:
    """The redemption row behind a discounted invoice, or ``None``."""
    # app registry: models load on first use
    from billable.models import PromoRedemption

    # port: switch to a growth selector when available
    return PromoRedemption.objects.filter(pk=promo_id or 0).first()


def gift_offer(sku: str) -> Any:
    """The active offer ``sku`` (or ``None``) for a gift invoice."""
    # app registry: models load on first use
    from billable.models import Offer

    # port: switch to OfferService.get_offer when available
    return Offer.objects.filter(sku=str(sku or "").strip(), is_active=True).first()


def create_gift(user_id: int, sku: str, *, telegram_user_id: int) -> Any:
    """A pending gift of ``sku`` and its pending order."""
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.gifts import GiftService

    return GiftService.create_gift(user_id, sku, metadata={
        "source": "telegram", "telegram_user_id": telegram_user_id})


def pay_gift_order(order_id: int, *, charge_id: str, method: str) -> Any:
    """Pay a gift's order without granting (the claim grants); exactly once per charge."""
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.gifts import GiftService

    return GiftService.pay_gift_order(order_id, payment_id=charge_id, payment_method=method)


def gift_token_for_order(order_id: int | None) -> str | None:
    """The deep-link token of the gift paid by ``order_id``."""
    # app registry: models load on first use
    from billable.models import Gift

    if order_id is None:
        return None
    # port: switch to a growth selector when available
    return Gift.objects.filter(order_id=order_id).values_list("token", flat=True).first()


def claim_gift(token: str, *, user_id: int, telegram_user_id: int,
               provider: str = "telegram") -> tuple[list[Any], Any, Any]:
    """Claim the gift: ``(batches, gift, buyer's identity or None)``; raises ``gift_*``."""
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.gifts import GiftService
    from billable.models import ExternalIdentity

    batches = GiftService.claim(token, user_id=user_id,
                                metadata={"telegram_user_id": telegram_user_id})
    gift = GiftService.get_gift(token)
    # port: switch to IdentityService (the owner's first identity) when available
    identity = (ExternalIdentity.objects.filter(user_id=gift.buyer_id, provider=provider)
                .order_by("created_at", "id").first())
    return batches, gift, identity


def alerts_enabled(user_id: int) -> bool:
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.alerts import AlertService

    return bool(AlertService.is_enabled(user_id))


def set_alerts_enabled(user_id: int, enabled: bool) -> bool:
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.alerts import AlertService

    return bool(AlertService.set_enabled(user_id, enabled))


def alert_buy_offers(notice: Any, skus: Iterable[str]) -> list[Any]:
    """The offers an alert's buy button sells: the rule's ``buy_offer``, else the configured
    offers (in ``skus`` order) that contain the alert's product."""
    # app registry: models load on first use
    from billable.models import Offer

    rule = getattr(notice.product, "alert_rule", None)
    if rule is not None and rule.buy_offer is not None and rule.buy_offer.is_active:
        return [rule.buy_offer]
    wanted = list(skus)
    # port: switch to OfferService.get_offers when available
    offers = Offer.objects.filter(sku__in=wanted, is_active=True,
                                  items__product=notice.product).distinct()
    found = {o.sku: o for o in offers}
    return [found[sku] for sku in wanted if sku in found]


def claim_alert_notices(*, provider: str, limit: int) -> list[tuple[Any, Any]]:
    """Claim up to ``limit`` pending alert notices: ``(notice, identity)`` of each one to send.

    A notice of an opted-out customer, or of one without a chat on ``provider``, is marked
    skipped; the others are marked sent before they are returned (each claimed once, also by
    concurrent senders: a conditional ``pending → state`` update).
    """
    # app registry: models load on first use
    from billable.models import AlertNotice, ExternalIdentity, NotificationPreference

    # port: switch to an alerts facade (claim) when available
    pending = AlertNotice.objects.filter(delivery=AlertNotice.Delivery.PENDING)
    claimed: list[tuple[Any, Any]] = []
    for notice in pending.select_related("product__alert_rule__buy_offer", "batch").order_by(
            "created_at", "id")[:limit]:
        owner = notice.batch.user_id  # the batch's owner now (a merge may have moved it)
        opted_out = NotificationPreference.objects.filter(user_id=owner,
                                                          alerts_enabled=False).exists()
        identity = (ExternalIdentity.objects.filter(user_id=owner, provider=provider)
                    .order_by("created_at", "id").first())
        chat = identity.external_id if identity is not None else ""
        state = (AlertNotice.Delivery.SKIPPED if opted_out or not chat.isdigit()
                 else AlertNotice.Delivery.SENT)
        with transaction.atomic():
            won = AlertNotice.objects.filter(
                pk=notice.pk, delivery=AlertNotice.Delivery.PENDING).update(
                delivery=state, delivered_at=timezone.now())
        if won and state == AlertNotice.Delivery.SENT:
            claimed.append((notice, identity))
    return claimed


def mark_alert_failed(notice_id: int) -> None:
    # app registry: models load on first use
    from billable.models import AlertNotice

    AlertNotice.objects.filter(pk=notice_id).update(delivery=AlertNotice.Delivery.FAILED)


async def ascan_alerts() -> Any:
    """``AlertService.ascan``: record the due low-balance and expiry notices."""
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.alerts import AlertService

    return await AlertService.ascan()


def gift_expiry(token: str | None) -> Any:
    """When the gift ``token`` stops being claimable (``None`` if unknown)."""
    # app registry: models load on first use
    from billable.models import Gift

    return Gift.objects.filter(token=token).values_list("expires_at", flat=True).first()


def expire_gifts() -> tuple[int, list[int]]:
    """Expire the due gifts: ``(how many expired now, order ids of every expired gift)``."""
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.gifts import GiftService
    from billable.models import Gift

    expired = GiftService.expire_gifts()
    orders = Gift.objects.filter(status=Gift.Status.EXPIRED).values_list("order_id", flat=True)
    return len(expired), [pk for pk in orders if pk is not None]


__all__ = [
    "Account",
    "Hold",
    "OfferView",
    "OrderView",
    "abalance",
    "acheck",
    "aclaim_trial",
    "aconsume",
    "acurrent_owner",
    "aentitlement_ends",
    "agranted_products",
    "ahold",
    "alert_buy_offers",
    "alerts_enabled",
    "alisten_identity_changes",
    "aoffer_name",
    "aoffer_with_product",
    "aproduct_name",
    "aproduct_names",
    "arelease",
    "aresolve_account",
    "ascan_alerts",
    "asettle",
    "askus_with_product",
    "asummary",
    "auser_id_for",
    "claim_alert_notices",
    "claim_gift",
    "create_gift",
    "create_order",
    "current_owner",
    "expire_gifts",
    "gift_expiry",
    "gift_offer",
    "gift_token_for_order",
    "hold",
    "identity_change",
    "identity_notices_supported",
    "identity_profile",
    "mark_alert_failed",
    "offer",
    "offer_names",
    "offers",
    "order",
    "order_skus",
    "order_summary",
    "pay_gift_order",
    "pay_order",
    "promo_code",
    "promo_redemption",
    "promo_reservation_problem",
    "redeem_promo",
    "refund_order",
    "register_offer_validator",
    "release",
    "set_alerts_enabled",
    "settle",
    "user_id_for",
    "watch_identities",
]
