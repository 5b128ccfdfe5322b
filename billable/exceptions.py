"""The billable exception hierarchy.

Every error has a stable ``code`` that interfaces translate once (the REST API to an HTTP status
and JSON body, the bot kit to a localized text, management commands to ``CommandError``).
The root derives from ``ValueError`` because the published 0.2 package raised ``ValueError``
for these situations and callers catch it.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy


def _(text: str) -> Any:
    """``gettext_lazy``: rendered in the active language when the error is raised."""
    return gettext_lazy(text)


class BillableError(ValueError):
    """Root of every error raised by billable services.

    ``default_message`` is marked for Django's translation: it is rendered in the active
    language when the error is raised (``code`` never changes).
    """

    code = "billable_error"
    default_message: Any = _("Billing error")

    def __init__(self, message: str | None = None, **details: object) -> None:
        self.message = str(message or self.default_message)
        self.details = details
        super().__init__(self.message)


# -- invalid input -----------------------------------------------------------------------------


class InvalidInput(BillableError):
    """The caller passed a malformed value (wrong type, blank, out of range)."""

    code = "invalid_input"
    default_message = _("Invalid input")


class InvalidAmount(InvalidInput):
    """An amount or quantity is not a positive whole number."""

    code = "invalid_amount"
    default_message = _("Amount must be a positive integer")


class InvalidProductKey(InvalidInput):
    """A product key or SKU is empty or not a string."""

    code = "invalid_product_key"
    default_message = _("Product key must be a non-empty string")


class InvalidPrice(InvalidInput):
    """A price cannot be used (negative, fractional where whole units are required)."""

    code = "invalid_price"
    default_message = _("Invalid price")


# -- not found ---------------------------------------------------------------------------------


class NotFound(BillableError):
    """A referenced object does not exist (or is not active)."""

    code = "not_found"
    default_message = _("Not found")


class UserNotFound(NotFound):
    code = "user_not_found"
    default_message = _("User not found")


class ProductNotFound(NotFound):
    code = "product_not_found"
    default_message = _("Product not found")


class OfferNotFound(NotFound):
    code = "offer_not_found"
    default_message = _("Offer not found")


class OrderNotFound(NotFound):
    code = "order_not_found"
    default_message = _("Order not found")


class ReservationNotFound(NotFound):
    code = "reservation_not_found"
    default_message = _("Reservation not found")


# -- balance -----------------------------------------------------------------------------------


class QuotaError(BillableError):
    """The wallet cannot cover the request."""

    code = "quota_error"


class QuotaExhausted(QuotaError):
    """No spendable batch of the product exists."""

    code = "quota_exhausted"
    default_message = _("No active quota")


class InsufficientFunds(QuotaError):
    """Spendable batches exist but hold less than requested."""

    code = "insufficient_funds"
    default_message = _("Insufficient balance")


# -- conflicts ---------------------------------------------------------------------------------


class ConflictError(BillableError):
    """The request contradicts the current state."""

    code = "conflict"
    default_message = _("Conflict")


class IdempotencyConflict(ConflictError):
    """An idempotency key was reused with a different request."""

    code = "idempotency_conflict"
    default_message = _("Idempotency key reused with different parameters")


class OrderStateError(ConflictError):
    """The order is not in a state that allows the operation."""

    code = "order_state_conflict"
    default_message = _("Order is not in a valid state for this operation")


class PaymentConflict(ConflictError):
    """A payment id is already attached to another order, or the order was paid differently."""

    code = "payment_conflict"
    default_message = _("Payment conflict")


class ReservationStateError(ConflictError):
    """A reservation was already settled in an incompatible way."""

    code = "reservation_state_conflict"
    default_message = _("Reservation already settled")


class IdentityConflict(ConflictError):
    """Two accounts hold different identities for the same provider."""

    code = "identity_conflict"
    default_message = _("Identity conflict")


class TrialAlreadyUsed(ConflictError):
    """The trial was already claimed by one of the identities."""

    code = "trial_already_used"
    default_message = _("Trial already used")


class ReferralError(ConflictError):
    """A referral cannot be created (self-referral, second referrer, cycle)."""

    code = "referral_invalid"
    default_message = _("Relationship exists or invalid IDs")


class MergeError(BillableError):
    """A customer merge was refused."""

    code = "merge_invalid"
    default_message = _("Merge refused")


class CurrencyError(BillableError):
    """An exchange currency is missing, inactive, not marked as a currency, or not a spendable
    quantity (a ``period`` or ``unlimited`` product cannot be a currency)."""

    code = "currency_invalid"
    default_message = _("Invalid currency")


class EmptyOffer(InvalidInput):
    """An offer without items cannot be bought, exchanged, invoiced or claimed as a trial."""

    code = "offer_has_no_items"
    default_message = _("This offer has no items and cannot be sold")


# -- infrastructure ----------------------------------------------------------------------------


class DatabaseBusy(BillableError):
    """The database aborted the operation (deadlock victim, serialization failure, SQLite
    write lock timeout) after every retry; nothing was applied and the call may be repeated."""

    code = "database_busy"
    default_message = _("The database is busy; try again")
    #: True when raised inside a transaction that an enclosing retrying operation opened:
    #: that operation runs again instead (``billable.ledger.retry``).
    transient: bool = False


class DatabaseUnavailable(BillableError):
    """The connection to the database broke (a restart, a failover, a terminated backend) or
    none could be had in time. The operation was rolled back — unless the connection broke
    while it committed, when it may have been applied: repeat it **with the same idempotency
    key** (or payment id), which replays it instead of applying it twice."""

    code = "database_unavailable"
    default_message = _("The database is unavailable; repeat the request with the same "
                        "idempotency key")


class LedgerImmutable(BillableError):
    """Raised when code tries to update or delete a ledger row."""

    code = "ledger_immutable"
    default_message = "Ledger rows are immutable: write a new transaction instead."


class UnknownScope(InvalidInput):
    """An API key scope that does not exist."""

    code = "unknown_scope"
    default_message = "Unknown scope"


# -- engine control flow (private: raised and caught inside billable.ledger) -------------------


class Refusal(BillableError):
    """Internal: raised inside ``atomic()`` to roll back and hand a refusal out.

    ``result`` is the documented failure dict (``quota_exhausted`` / ``insufficient_funds``);
    the engine catches it and returns (or raises) the public form, it never escapes.
    """

    code = "refused"

    def __init__(self, result: dict[str, object]) -> None:
        super().__init__(str(result["message"]))
        self.result = result


class StaleBatch(BillableError):
    """Internal: a conditional batch (or hold) update matched no row; the operation is retried."""

    code = "stale_batch"


class RetryTransaction(BillableError):
    """Internal: raised inside a retried operation to roll it back and run it again.

    For a path that finds, after taking its locks, that the rows it locked are not all the rows
    it must change (a row appeared in between): it gives every lock back instead of waiting for
    the newcomer, which may be waiting for it.
    """

    code = "retry_transaction"


class UnsupportedDatabase(BillableError):
    """The database backend's SQL dialect is not one the engine's statements support."""

    code = "unsupported_database"
    default_message = "Unsupported database backend"


__all__ = [
    "BillableError",
    "ConflictError",
    "CurrencyError",
    "DatabaseBusy",
    "DatabaseUnavailable",
    "EmptyOffer",
    "IdempotencyConflict",
    "IdentityConflict",
    "InsufficientFunds",
    "InvalidAmount",
    "InvalidInput",
    "InvalidPrice",
    "InvalidProductKey",
    "LedgerImmutable",
    "MergeError",
    "NotFound",
    "OfferNotFound",
    "OrderNotFound",
    "OrderStateError",
    "PaymentConflict",
    "ProductNotFound",
    "QuotaError",
    "QuotaExhausted",
    "ReferralError",
    "Refusal",
    "ReservationNotFound",
    "ReservationStateError",
    "RetryTransaction",
    "StaleBatch",
    "TrialAlreadyUsed",
    "UnknownScope",
    "UnsupportedDatabase",
    "UserNotFound",
]


# -- growth: promo codes and gifts ---------------------------------------------------------------


class PromoUnknown(NotFound):
    """No promo code has this text (codes are case-insensitive)."""

    code = "promo_unknown"
    default_message = "Unknown promo code"


class PromoExpired(ConflictError):
    """The code is inactive, not valid yet or no longer valid."""

    code = "promo_expired"
    default_message = "This promo code has expired"


class PromoExhausted(ConflictError):
    """The code reached its total number of uses."""

    code = "promo_exhausted"
    default_message = "This promo code has been used up"


class PromoAlreadyUsed(ConflictError):
    """This customer (or one of its identities) already used the code."""

    code = "promo_already_used"
    default_message = "You have already used this promo code"


class PromoNotFirstTime(ConflictError):
    """The code is for first-time buyers and the customer already paid an order."""

    code = "promo_not_first_time"
    default_message = "This promo code is for first-time buyers only"


class PromoNotApplicable(InvalidInput):
    """A discount code asked for an offer it does not discount (or without an offer)."""

    code = "promo_not_applicable"
    default_message = "This promo code does not apply to this offer"


class GiftUnknown(NotFound):
    """No gift has this token."""

    code = "gift_unknown"
    default_message = "Unknown gift"


class GiftOwn(ConflictError):
    """The buyer tried to claim their own gift."""

    code = "gift_own"
    default_message = "You cannot claim your own gift"


class GiftAlreadyClaimed(ConflictError):
    """Somebody claimed the gift first."""

    code = "gift_already_claimed"
    default_message = "This gift has already been claimed"


class GiftExpired(ConflictError):
    """The gift was not claimed in time (or was refunded, or never paid)."""

    code = "gift_expired"
    default_message = "This gift is no longer available"


__all__ += [
    "GiftAlreadyClaimed",
    "GiftExpired",
    "GiftOwn",
    "GiftUnknown",
    "PromoAlreadyUsed",
    "PromoExhausted",
    "PromoExpired",
    "PromoNotApplicable",
    "PromoNotFirstTime",
    "PromoUnknown",
]


def describe(exc: BaseException) -> str:
    """One line for a log or an admin column: the class name and the first line of the text
    (a driver's error spans several; a warning that stands for a traceback needs one)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


__all__ += ["describe"]
