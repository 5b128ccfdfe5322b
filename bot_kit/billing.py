"""The billing port: bot_kit's **only** door into billable.

Middlewares, payment handlers, command handlers and the paywall call these functions; nothing
else in ``bot_kit`` imports ``billable.models``, ``billable.services`` or the ledger engine, and
nothing in ``bot_kit`` runs SQL on billable's tables (``tests/architecture/
test_bot_kit_boundary.py`` enforces it). The port speaks in plain values and small frozen views
(:class:`Hold`, :class:`Account`, :class:`OfferView`, :class:`OrderView`) so a kit module never
needs a billable model class.

Every function delegates to billable's public layer and nothing else: the service facades
(``billable.services``), the growth workflows (``billable.growth``: promo codes, gifts, alerts)
and the read selectors (``billable.selectors.catalog``, ``.orders``, ``.wallet``). The port
never queries a model itself.

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


def _answer(placed: Any, *, takeover: bool) -> Hold | None:
    """What one placement of a hold decides (:func:`hold`'s rules), or ``None`` when the key
    must be placed again: its earlier hold was released, or held by a dead attempt
    (``takeover``)."""
    if placed.fresh:
        return Hold(placed.reservation_id, run=True)
    if placed.state == "COMMITTED":
        return Hold(placed.reservation_id, run=False, reason="already_charged")
    if placed.state == "HELD" and not takeover:
        return Hold(placed.reservation_id, run=False, reason="in_progress")
    return None


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
        done = _answer(placed, takeover=takeover)
        if done is not None:
            return done
        if placed.state == "HELD":  # a dead attempt's hold: give it back, then run again
            release(placed.reservation_id)
            logger.info("hold %s of a dead attempt released; %s runs again",
                        placed.reservation_id, key)
        key = f"{key}:retry:{placed.reservation_id}"
    return Hold(None, run=False, reason="too_many_attempts")


async def ahold(user_id: int, product_key: str, amount: int, *, key: str,
                ttl: int | None = None, takeover: bool = False,
                metadata: Mapping[str, Any] | None = None) -> Hold:
    """Async twin of :func:`hold` (same rules), through ``HoldService.aplace``: a fresh hold
    is one statement in the event loop on PostgreSQL (the gated fast path)."""
    # app registry: billable.services loads the models; imported on first use
    from billable.services import HoldService

    for _ in range(MAX_HOLD_ATTEMPTS):
        placed = await HoldService.aplace(
            user_id, product_key, amount, idempotency_key=key, ttl=ttl,
            metadata=dict(metadata) if metadata else {"source": "bot_kit"}, action_type="usage")
        done = _answer(placed, takeover=takeover)
        if done is not None:
            return done
        if placed.state == "HELD":  # a dead attempt's hold: give it back, then run again
            await arelease(placed.reservation_id)
            logger.info("hold %s of a dead attempt released; %s runs again",
                        placed.reservation_id, key)
        key = f"{key}:retry:{placed.reservation_id}"
    return Hold(None, run=False, reason="too_many_attempts")


def settle(reservation_id: str | None) -> None:
    """Charge a hold after the handler returned (the balance is not read back)."""
    # app registry: billable.services loads the models; imported on first use
    from billable.services import HoldService

    HoldService.commit(reservation_id, read_balance=False)


async def asettle(reservation_id: str | None) -> None:
    """Async twin of :func:`settle`, through ``HoldService.acommit`` (one statement in the
    event loop on the gated fast path)."""
    # app registry: billable.services loads the models; imported on first use
    from billable.services import HoldService

    await HoldService.acommit(reservation_id, read_balance=False)


def release(reservation_id: str | None) -> bool:
    """Give a hold's units back (the handler raised); False when it was no longer held."""
    # app registry: billable.services loads the models; imported on first use
    from billable.services import HoldService

    return bool(HoldService.release(reservation_id))


async def arelease(reservation_id: str | None) -> bool:
    """Async twin of :func:`release` (``HoldService.arelease``)."""
    # app registry: billable.services loads the models; imported on first use
    from billable.services import HoldService

    return bool(await HoldService.arelease(reservation_id))


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
    # app registry: billable.services loads the models; imported on first use
    from billable.services import IdentityService

    return IdentityService.profile(provider, str(external_id))


def watch_identities(*, on_merge: Callable[[Iterable[Any]], None],
                     on_identity: Callable[[str, Any], None], uid: str) -> None:
    """Call ``on_merge(user_ids)`` after customers are merged and ``on_identity(external_id,
    user_id)`` after an identity row is saved or deleted (connected once per ``uid``)."""
    # app registry: billable.services loads the models; imported on first use
    from billable.services import IdentityService

    def merged(sender: Any, target_user_id: Any = None, source_user_id: Any = None,
               **kwargs: Any) -> None:
        on_merge((target_user_id, source_user_id))

    customers_merged.connect(merged, weak=False, dispatch_uid=f"{uid}.merge")
    IdentityService.watch(on_identity, uid=uid)


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
    # app registry: billable.selectors loads the models; imported on first use
    from billable.selectors import catalog

    names = await sync_to_async(catalog.product_names_by_pk)(list(totals), lang)
    return sorted(((str(names.get(pk, pk)), qty) for pk, qty in totals.items()),
                  key=lambda item: item[0])


async def aproduct_names(product_keys: Iterable[str],
                         lang: str | None = None) -> dict[str, str]:
    """``{KEY: display name in lang}`` of the known products among ``product_keys`` (the
    default-language name when not translated)."""
    # app registry: billable.selectors loads the models; imported on first use
    from billable.selectors import catalog

    return await sync_to_async(catalog.product_names)([str(k) for k in product_keys], lang)


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
    # app registry: billable.selectors loads the models; imported on first use
    from billable.selectors import wallet

    ends: dict[str, Any] = await sync_to_async(wallet.entitlement_ends)(user_id)
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


def offer(sku: Any, *, active_only: bool = True) -> OfferView | None:
    """The offer ``sku`` (an active one unless ``active_only`` is False), or ``None``."""
    # app registry: billable.selectors loads the models; imported on first use
    from billable.selectors import catalog

    found = catalog.find_offer(sku, active_only=active_only)
    return OfferView.of(found) if found is not None else None


def offers(skus: Iterable[str]) -> list[OfferView]:
    """The active offers among ``skus``, in the order of ``skus``."""
    # app registry: billable.selectors loads the models; imported on first use
    from billable.selectors import catalog

    wanted = [str(s).upper() for s in skus]
    found = catalog.offers_by_sku(wanted, active_only=True)
    return [OfferView.of(found[s]) for s in wanted if s in found]


def offer_names(skus: Iterable[str], lang: str | None = None) -> dict[str, str]:
    """``{SKU: name in lang}`` of the known offers among ``skus`` (active or not)."""
    # app registry: billable.selectors loads the models; imported on first use
    from billable.selectors import catalog

    found = catalog.offers_by_sku([str(s) for s in skus], active_only=False)
    return {sku: OfferView.of(o).localized_name(lang) for sku, o in found.items()}


async def aoffer_name(sku: str, lang: str | None = None) -> str:
    """The offer's name in ``lang`` (its SKU when unknown)."""
    names = await sync_to_async(offer_names)([sku], lang)
    return names.get(sku) or sku


async def askus_with_product(skus: Iterable[str], product_key: str) -> set[str]:
    """The SKUs among ``skus`` whose offer contains ``product_key``."""
    # app registry: billable.selectors loads the models; imported on first use
    from billable.selectors import catalog

    return await sync_to_async(catalog.skus_with_product)(list(skus), product_key)


async def aoffer_with_product(sku: str, product_key: str) -> OfferView | None:
    """The offer ``sku`` (active or not) when it contains ``product_key``, else ``None``."""
    # app registry: billable.selectors loads the models; imported on first use
    from billable.selectors import catalog

    found = await sync_to_async(catalog.offer_with_product)(sku, product_key)
    return OfferView.of(found) if found is not None else None


def register_offer_validator(validator: Callable[[Any], None]) -> None:
    """Run ``validator(offer)`` in billable's ``Offer.clean`` (once, however often called)."""
    # app registry: billable.services loads the models; imported on first use
    from billable.services import OfferService

    OfferService.register_validator(validator)


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
    # app registry: billable.selectors loads the models; imported on first use
    from billable.selectors import orders

    found = orders.find_order(order_id)
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
    # app registry: billable.selectors loads the models; imported on first use
    from billable.selectors import orders

    return orders.order_skus(order_id)


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
                 sku: str | None = None, metadata: dict[str, Any] | None = None) -> Any:
    """``PromoService.redeem`` once per Telegram identity: the ``Redemption`` result.
    ``metadata`` (the bot's ``bot_id``) goes on the redemption, its order and its grants."""
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.promo import PromoService

    return PromoService.redeem(code, user_id=user_id, sku=sku,
                               identities={"telegram": telegram_user_id},
                               metadata={**(metadata or {}), "source": "telegram",
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
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.promo import PromoService

    return PromoService.get_redemption(promo_id)


def gift_offer(sku: str) -> Any:
    """The active offer ``sku`` (or ``None``) for a gift invoice."""
    # app registry: billable.selectors loads the models; imported on first use
    from billable.selectors import catalog

    return catalog.find_offer(sku)


def create_gift(user_id: int, sku: str, *, telegram_user_id: int,
                metadata: dict[str, Any] | None = None) -> Any:
    """A pending gift of ``sku`` and its pending order (``metadata``, the bot's ``bot_id``,
    goes on both)."""
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.gifts import GiftService

    return GiftService.create_gift(user_id, sku, metadata={
        **(metadata or {}), "source": "telegram", "telegram_user_id": telegram_user_id})


def pay_gift_order(order_id: int, *, charge_id: str, method: str) -> Any:
    """Pay a gift's order without granting (the claim grants); exactly once per charge."""
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.gifts import GiftService

    return GiftService.pay_gift_order(order_id, payment_id=charge_id, payment_method=method)


def gift_token_for_order(order_id: int | None) -> str | None:
    """The deep-link token of the gift paid by ``order_id``."""
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.gifts import GiftService

    return GiftService.token_for_order(order_id)


def claim_gift(token: str, *, user_id: int, telegram_user_id: int,
               provider: str = "telegram",
               metadata: dict[str, Any] | None = None) -> tuple[list[Any], Any, Any]:
    """Claim the gift: ``(batches, gift, buyer's identity or None)``; raises ``gift_*``.
    ``metadata`` (the claiming bot's ``bot_id``) goes on the granted batches."""
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.gifts import GiftService
    from billable.services import IdentityService

    batches = GiftService.claim(token, user_id=user_id,
                                metadata={**(metadata or {}),
                                          "telegram_user_id": telegram_user_id})
    gift = GiftService.get_gift(token)
    identity = IdentityService.first_identity(gift.buyer_id, provider)
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
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.alerts import AlertService

    return list(AlertService.buy_offers(notice, skus))


def claim_alert_notices(*, provider: str, limit: int) -> list[tuple[Any, Any]]:
    """Claim up to ``limit`` pending alert notices: ``(notice, identity)`` of each one to send.

    A notice of an opted-out customer, or of one without a chat on ``provider``, is marked
    skipped; the others are marked sent before they are returned (each claimed once, also by
    concurrent senders: a conditional ``pending → state`` update).
    """
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.alerts import AlertService

    return [(claimed.notice, claimed.identity)
            for claimed in AlertService.claim_notices(provider=provider, limit=limit)]


def mark_alert_failed(notice_id: int) -> None:
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.alerts import AlertService

    AlertService.mark_failed(notice_id)


async def ascan_alerts() -> Any:
    """``AlertService.ascan``: record the due low-balance and expiry notices."""
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.alerts import AlertService

    return await AlertService.ascan()


def gift_expiry(token: str | None) -> Any:
    """When the gift ``token`` stops being claimable (``None`` if unknown)."""
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.gifts import GiftService

    return GiftService.expiry_of(token)


def expire_gifts() -> tuple[int, list[int]]:
    """Expire the due gifts: ``(how many expired now, order ids of every expired gift)``."""
    # app registry: billable.growth loads the models; imported on first use
    from billable.growth.gifts import GiftService

    expired = GiftService.expire_gifts()
    return len(expired), GiftService.expired_order_ids()


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
