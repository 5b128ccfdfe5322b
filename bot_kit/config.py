"""``BillingConfig``: the one typed object that configures bot_kit for a bot."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot_kit.throttling import ThrottleBackend

#: ``async (pre_checkout_query, order) -> error text or None``: a host veto before payment.
PrecheckoutValidator = Callable[[Any, Any], Awaitable[str | None]]


@dataclass(frozen=True)
class Throttle:
    """Per-user rate limit of gated commands: at most ``limit`` updates per ``window`` seconds.

    A backend that fails or takes longer than ``timeout`` seconds lets the update through.
    """

    limit: int = 1
    window: float = 1.0
    backend: ThrottleBackend | None = None
    timeout: float = 0.5

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window <= 0 or self.timeout <= 0:
            raise ValueError("Throttle needs limit >= 1, window > 0 and timeout > 0")


@dataclass(frozen=True)
class BillingConfig:
    """Everything bot_kit needs to know about a bot; passed once to ``setup_billing``.

    ``offers`` are the SKUs shown by ``/buy`` and the paywall (the paywall keeps those that
    contain the missing product); ``texts`` overrides catalog texts per language, e.g.
    ``{"en": {"paysupport": "Write to @our_support"}}``.
    """

    offers: tuple[str, ...] = ()
    trial_offer: str | None = None
    admin_ids: frozenset[int] = frozenset()
    signing_secrets: tuple[str, ...] = ()
    provider_token: str | None = None
    subscription_offers: tuple[str, ...] = ()
    texts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    default_language: str = "en"
    precheckout_validator: PrecheckoutValidator | None = None
    precheckout_timeout: float = 5.0
    # Identity
    identity_provider: str = "telegram"
    identity_cache_size: int = 10_000
    identity_revalidate_after: float = 0.0
    # Commands (names without the slash)
    balance_command: str = "balance"
    trial_command: str = "trial"
    support_command: str = "paysupport"
    # Growth: promo codes, gifts, alerts (docs/growth.md)
    promo_command: str = "promo"
    gift_command: str = "gift"
    notifications_command: str = "notifications"
    gift_offers: tuple[str, ...] = ()
    bot_username: str | None = None
    # Gating
    throttle: Throttle | None = None
    reservation_ttl: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "offers", tuple(s.upper() for s in self.offers))
        object.__setattr__(self, "subscription_offers",
                           tuple(s.upper() for s in self.subscription_offers))
        object.__setattr__(self, "gift_offers", tuple(s.upper() for s in self.gift_offers))
        object.__setattr__(self, "admin_ids", frozenset(self.admin_ids))
        object.__setattr__(self, "signing_secrets", tuple(self.signing_secrets))
        if self.trial_offer is not None:
            object.__setattr__(self, "trial_offer", self.trial_offer.upper())
        if self.identity_cache_size < 0:
            raise ValueError("identity_cache_size must be >= 0")
        if self.identity_revalidate_after < 0:
            raise ValueError("identity_revalidate_after must be >= 0")

    def is_admin(self, telegram_id: int | None) -> bool:
        """True when ``telegram_id`` is one of ``admin_ids``."""
        return telegram_id is not None and telegram_id in self.admin_ids


__all__ = ["BillingConfig", "PrecheckoutValidator", "Throttle"]
