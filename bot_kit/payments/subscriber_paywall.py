"""The paywall of a user who already holds the subscription the paywall would sell.

A user whose Stars subscription still runs (its paid period has not ended) can run out of the
units it granted before the next renewal. Offering that subscription again is a dead end: the
kit sells one subscription per user and offer, so the link is answered
``precheckout_already_subscribed``. This paywall says instead when the subscription renews
(``paywall_subscription_renews``, state ``active``) or that it ends without renewing
(``paywall_subscription_ends``, state ``canceled`` or ``failed``), on the date ``/subscribe``
shows (the ``expires_at`` of its last charge), and keeps the other ways to get more: the packs
of ``config.offers`` that contain the product (``paywall_subscriber_packs``), else the
subscription offers containing it that the user does not hold
(``paywall_subscriber_subscriptions``).

The one-per-user-and-offer rule holds whatever bot sold the subscription
(docs/multibot.md), so a subscription another bot of the project sold counts the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.db.models import Q
from django.utils import timezone

from bot_kit.texts import get_text

if TYPE_CHECKING:
    from bot_kit.billing import OfferView
    from bot_kit.config import BillingConfig


@dataclass(frozen=True)
class SubscriberPaywall:
    """What the paywall shows a subscriber: the text, and the buttons (packs first, else
    subscriptions; at most one of the two lists is non-empty)."""

    text: str
    packs: list[OfferView] = field(default_factory=list)
    subscriptions: list[OfferView] = field(default_factory=list)


async def held_subscriptions(telegram_user_id: int, offers: list[OfferView]) -> list[Any]:
    """The user's ``StarSubscription`` rows to one of ``offers`` whose paid period has not
    ended (an unknown end counts as running, as for the pre-checkout refusal), whichever bot
    sold them; the ones that renew first, soonest first, then the others."""
    # app registry: bot_kit.models needs it; the paywall imports this module on first use
    from bot_kit.models import StarSubscription

    skus = [offer.sku for offer in offers]
    if not skus:
        return []
    rows = [row async for row in StarSubscription.objects.filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()),
        telegram_user_id=telegram_user_id, sku__in=skus)]
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(rows, key=lambda row: (row.state != StarSubscription.State.ACTIVE,
                                         row.expires_at or far))


async def subscriber_paywall(telegram_user_id: int, *, subscriptions: list[OfferView],
                             packs: list[OfferView], product: str, lang: str,
                             config: BillingConfig) -> SubscriberPaywall | None:
    """The paywall of a user holding one of ``subscriptions`` (the purchasable subscription
    offers that contain the product), or ``None`` when they hold none of them.

    ``packs`` are the purchasable one-off offers that contain the product; ``product`` is its
    name in ``lang``.
    """
    # app registry: see held_subscriptions
    from bot_kit.models import StarSubscription
    from bot_kit.notices import format_date

    held = await held_subscriptions(telegram_user_id, subscriptions)
    if not held:
        return None
    subscription = held[0]
    offer = next(o for o in subscriptions if o.sku == subscription.sku)
    renews = subscription.state == StarSubscription.State.ACTIVE
    text = get_text("paywall_subscription_renews" if renews else "paywall_subscription_ends",
                    lang, config, product=product, name=offer.localized_name(lang),
                    date=format_date(subscription.expires_at))
    held_skus = {row.sku for row in held}
    others = [] if packs else [o for o in subscriptions if o.sku not in held_skus]
    if packs:
        text = f"{text}\n{get_text('paywall_subscriber_packs', lang, config)}"
    elif others:
        text = f"{text}\n{get_text('paywall_subscriber_subscriptions', lang, config)}"
    return SubscriberPaywall(text=text, packs=list(packs), subscriptions=others)


__all__ = ["SubscriberPaywall", "held_subscriptions", "subscriber_paywall"]
