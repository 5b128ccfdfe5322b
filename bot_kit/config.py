"""``BillingConfig``: the one typed object that configures bot_kit for a bot."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot_kit.throttling import ThrottleBackend

#: ``async (pre_checkout_query, order) -> error text or None``: a host veto before payment.
PrecheckoutValidator = Callable[[Any, Any], Awaitable[str | None]]
#: ``(telegram_user) -> language code or None`` (sync or async): a language the user picked.
LanguageGetter = Callable[[Any], "Awaitable[str | None] | str | None"]
#: ``(event) -> None`` (sync or async): a host callback; see ``bot_kit.events``.
EventCallback = Callable[[Any], "Awaitable[None] | None"]

#: ``BillingConfig.wallet``: one billing account per Telegram user for every bot of the project.
WALLET_SHARED = "shared"
#: ``BillingConfig.wallet``: one billing account (and trial) per Telegram user *and bot*.
WALLET_PER_BOT = "per_bot"

#: The only subscription period the Bot API accepts outside the test environment (30 days).
TELEGRAM_SUBSCRIPTION_PERIOD = 2592000


#: Subscription SKUs of every ``BillingConfig`` built in this process (for ``Offer.clean``).
_SUBSCRIPTION_SKUS: set[str] = set()

#: The kit's commands (feature → default command name, without the slash).
DEFAULT_COMMANDS: Mapping[str, str] = {
    "buy": "buy",
    "subscribe": "subscribe",
    "refund": "refund",
    "balance": "balance",
    "trial": "trial",
    "paysupport": "paysupport",
    "gift": "gift",
    "promo": "promo",
    "notifications": "notifications",
}


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


class ResolvedCommands(Mapping[str, "str | None"]):
    """``BillingConfig.commands`` after resolution: every feature's command name (read-only),
    remembering which of them the caller named explicitly (see ``_resolve_commands``)."""

    def __init__(self, resolved: Mapping[str, str | None],
                 explicit: Mapping[str, str | None]) -> None:
        self._resolved = MappingProxyType(dict(resolved))
        self.explicit = MappingProxyType(dict(explicit))

    def __getitem__(self, feature: str) -> str | None:
        return self._resolved[feature]

    def __iter__(self) -> Any:
        return iter(self._resolved)

    def __len__(self) -> int:
        return len(self._resolved)

    def __repr__(self) -> str:
        return repr(dict(self._resolved))


@dataclass(frozen=True)
class BillingConfig:
    """Everything bot_kit needs to know about a bot; passed once to ``setup_billing``.

    ``offers`` are the SKUs sold by ``/buy`` and the paywall (the paywall keeps those that
    contain the missing product, else the ``subscription_offers`` that do, else
    ``paywall_fallback``, else says "not available");
    ``texts`` overrides catalog texts per language, e.g.
    ``{"en": {"paysupport": "Write to @our_support"}}``; ``locale_dirs`` adds gettext catalogs
    (``<dir>/<lang>/LC_MESSAGES/bot_kit.po``); ``language_getter`` returns a language the user
    picked in the bot. ``on_paid`` / ``on_refunded`` / ``on_subscription_changed`` /
    ``on_quota_exhausted`` are called once per event (see ``bot_kit.events``).
    ``subscription_period`` must be 2592000 (30 days) unless ``test_environment`` is set.

    ``commands`` renames (``{"buy": "purchase"}``) or removes (``{"refund": None}``) the kit's
    commands; the keys are those of :data:`DEFAULT_COMMANDS`. ``balance_command``,
    ``trial_command`` and ``support_command`` are the older spelling of the same and are used
    when ``commands`` does not name that feature. A removed command's feature stays reachable
    through its buttons and services; the host can register its own handler instead.

    Several bots in one project (``docs/multibot.md``): ``bot_id`` is the bot's Telegram id
    (``bot_id_from_token(token)``); with it, invoice payloads, orders and ledger rows are bound
    to the bot and a payment made to another bot is refused and refunded. ``wallet="per_bot"``
    (needs ``bot_id``) gives every bot its own accounts and trials (identity provider
    ``telegram:<bot_id>``); ``"shared"`` (default) one account per user.
    """

    offers: tuple[str, ...] = ()
    trial_offer: str | None = None
    admin_ids: frozenset[int] = frozenset()
    signing_secrets: tuple[str, ...] = ()
    provider_token: str | None = None
    subscription_offers: tuple[str, ...] = ()
    texts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    default_language: str = "en"
    locale_dirs: tuple[str, ...] = ()
    language_getter: LanguageGetter | None = None
    paywall_fallback: tuple[str, ...] = ()
    subscription_period: int = TELEGRAM_SUBSCRIPTION_PERIOD
    test_environment: bool = False
    # Host callbacks (bot_kit.events)
    on_paid: EventCallback | None = None
    on_refunded: EventCallback | None = None
    on_subscription_changed: EventCallback | None = None
    on_quota_exhausted: EventCallback | None = None
    precheckout_validator: PrecheckoutValidator | None = None
    precheckout_timeout: float = 5.0
    # Identity
    identity_provider: str = "telegram"
    bot_id: int | None = None
    wallet: str = WALLET_SHARED
    identity_cache_size: int = 10_000
    identity_revalidate_after: float = 0.0
    identity_notices: bool = True
    # Commands (names without the slash)
    balance_command: str = "balance"
    trial_command: str = "trial"
    support_command: str = "paysupport"
    commands: Mapping[str, str | None] = field(default_factory=dict)
    # Growth (docs/growth.md): offers /gift sells (default: offers), the bot's username for
    # gift links (default: getMe)
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
        object.__setattr__(self, "paywall_fallback",
                           tuple(s.upper() for s in self.paywall_fallback))
        object.__setattr__(self, "locale_dirs", tuple(str(d) for d in self.locale_dirs))
        object.__setattr__(self, "admin_ids", frozenset(self.admin_ids))
        object.__setattr__(self, "signing_secrets", tuple(self.signing_secrets))
        if self.trial_offer is not None:
            object.__setattr__(self, "trial_offer", self.trial_offer.upper())
        if self.wallet not in (WALLET_SHARED, WALLET_PER_BOT):
            raise ValueError('wallet must be "shared" or "per_bot"')
        if self.bot_id is not None and (isinstance(self.bot_id, bool)
                                        or not isinstance(self.bot_id, int) or self.bot_id <= 0):
            raise ValueError("bot_id must be a positive integer (the bot's Telegram id)")
        if self.wallet == WALLET_PER_BOT and self.bot_id is None:
            raise ValueError('wallet="per_bot" needs bot_id')
        if self.identity_cache_size < 0:
            raise ValueError("identity_cache_size must be >= 0")
        if self.identity_revalidate_after < 0:
            raise ValueError("identity_revalidate_after must be >= 0")
        if self.subscription_period <= 0 or (
                not self.test_environment
                and self.subscription_period != TELEGRAM_SUBSCRIPTION_PERIOD):
            raise ValueError("subscription_period must be 2592000 (30 days); shorter periods "
                             "are for Telegram's test environment (test_environment=True)")
        object.__setattr__(self, "commands", self._resolve_commands())
        _SUBSCRIPTION_SKUS.update(self.subscription_offers)

    def _resolve_commands(self) -> Mapping[str, str | None]:
        # A config made by dataclasses.replace() gets the resolved mapping back as ``commands``:
        # only what its caller named explicitly stays explicit, so a replaced balance_command
        # (or trial_command, support_command) still renames its command.
        given = self.commands
        explicit = given.explicit if isinstance(given, ResolvedCommands) else dict(given)
        unknown = sorted(set(explicit) - set(DEFAULT_COMMANDS))
        if unknown:
            raise ValueError(f"Unknown bot_kit command(s) {unknown}; "
                             f"known: {sorted(DEFAULT_COMMANDS)}")
        legacy = {"balance": self.balance_command, "trial": self.trial_command,
                  "paysupport": self.support_command}
        resolved: dict[str, str | None] = {**DEFAULT_COMMANDS, **legacy}
        for feature, name in explicit.items():
            if name is not None and (not isinstance(name, str) or not name.strip()
                                     or name.strip().startswith("/")):
                raise ValueError(f"Command name for {feature!r} must be a non-empty string "
                                 f"without the slash, or None to remove it")
            resolved[feature] = name.strip() if name is not None else None
        return ResolvedCommands(resolved, explicit)

    @property
    def telegram_provider(self) -> str:
        """The ``ExternalIdentity`` provider (and trial identity type) of this bot's users:
        ``identity_provider`` for a shared wallet, ``"<identity_provider>:<bot_id>"`` per bot.
        The one place the kit names it."""
        if self.wallet == WALLET_PER_BOT:
            return f"{self.identity_provider}:{self.bot_id}"
        return self.identity_provider

    @property
    def trial_identity_type(self) -> str:
        """The identity type under which ``/trial`` records a claim: ``"telegram"`` for a
        shared wallet (one trial per person across the owner's bots), the bot's provider
        per bot (one trial per person and bot)."""
        return self.telegram_provider if self.wallet == WALLET_PER_BOT else "telegram"

    @property
    def bot_key(self) -> str | None:
        """``bot_id`` as the string the dashboard's ``metadata["bot_id"]`` contract wants."""
        return None if self.bot_id is None else str(self.bot_id)

    def bot_metadata(self, **extra: object) -> dict[str, object]:
        """``extra`` plus ``{"bot_id": "<bot id>"}`` when this config names its bot."""
        return {**extra, "bot_id": self.bot_key} if self.bot_key is not None else dict(extra)

    def command(self, feature: str) -> str | None:
        """The command name of ``feature`` (``"buy"`` …), or ``None`` when it is removed."""
        return self.commands[feature]

    def is_admin(self, telegram_id: int | None) -> bool:
        """True when ``telegram_id`` is one of ``admin_ids``."""
        return telegram_id is not None and telegram_id in self.admin_ids


def bot_id_from_token(token: str) -> int:
    """The bot's Telegram id: the numeric part of its token before ``:`` (no network call;
    aiogram's ``Bot.id`` is the same number)."""
    head, sep, _ = str(token).partition(":")
    if not sep or not head.isdigit() or int(head) <= 0:
        raise ValueError("Not a bot token (expected '<bot id>:<secret>')")
    return int(head)


__all__ = [
    "DEFAULT_COMMANDS",
    "TELEGRAM_SUBSCRIPTION_PERIOD",
    "WALLET_PER_BOT",
    "WALLET_SHARED",
    "BillingConfig",
    "EventCallback",
    "LanguageGetter",
    "PrecheckoutValidator",
    "Throttle",
    "bot_id_from_token",
]
