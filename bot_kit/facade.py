"""``BillingFacade``: the billing port bound to one user (the base of ``BillingContext``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot_kit import billing

if TYPE_CHECKING:
    from bot_kit.config import BillingConfig


@dataclass(frozen=True)
class Balance:
    """What the ``HasQuota`` filter injects as ``billing_balance``."""

    product_key: str
    remaining: int
    can_use: bool


@dataclass(frozen=True)
class BillingFacade:
    """Async shortcuts to billing for ``user_id`` (the billing account).

    Every method goes through the billing port (:mod:`bot_kit.billing`) to billable's services,
    so the ledger rules (locking, idempotency, consumption order) are exactly theirs.
    With the bot's ``config``, consumptions and trial claims carry its ``bot_id`` and the trial
    is claimed under its identity type (``docs/multibot.md``).
    """

    user_id: int
    user: Any = None
    config: BillingConfig | None = None

    async def balance(self, product_key: str) -> int:
        """Spendable units of ``product_key``."""
        return await billing.abalance(self.user_id, product_key)

    async def check(self, product_key: str) -> dict[str, Any]:
        """The ``check_quota`` dict (``can_use``, ``remaining``, ``message`` …)."""
        return await billing.acheck(self.user_id, product_key)

    async def consume(self, product_key: str, *, amount: int = 1, action_type: str = "usage",
                      idempotency_key: str | None = None,
                      metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Spend ``amount`` units now; returns the ``consume_quota`` result dict."""
        return await billing.aconsume(self.user_id, product_key, amount=amount,
                                      action_type=action_type,
                                      idempotency_key=idempotency_key,
                                      metadata=self._with_bot(metadata))

    async def summary(self) -> dict[str, dict[str, Any]]:
        """``{KEY: {total, used, remaining, is_unlimited, expiry}}`` for the whole wallet."""
        return await billing.asummary(self.user_id)

    async def claim_trial(self, sku: str, *, telegram_id: int | str | None = None) -> list[Any]:
        """Claim the free offer ``sku`` once per identity (raises ``TrialAlreadyUsed``)."""
        kind = self.config.trial_identity_type if self.config is not None else "telegram"
        identities = {kind: str(telegram_id)} if telegram_id is not None else None
        return await billing.aclaim_trial(self.user_id, sku, identities=identities,
                                          metadata=self._with_bot(None))

    def _with_bot(self, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        """``metadata`` with the bot's ``bot_id`` (when the config names the bot)."""
        if self.config is None or self.config.bot_key is None:
            return metadata
        return {"bot_id": self.config.bot_key, **(metadata or {})}


__all__ = ["Balance", "BillingFacade"]
