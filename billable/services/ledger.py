"""``TransactionService``: the public facade of the wallet and the immutable ledger.

Every method validates its input first (``billable.validation``: a ``billable`` exception with
a stable ``code``, nothing written), then calls the engine (``billable.ledger``: ``spend``,
``grants``, ``holds``, ``closing``, ``audit``) with keyword arguments, and shapes refusals into
the published 0.2 failure dicts (``billable.compat``). Writes are synchronous and atomic; each
async twin sits right below its sync method and delegates with ``sync_to_async``. See
``docs/ledger.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone

from billable.compat import failure_result
from billable.exceptions import (
    BillableError,
    IdempotencyConflict,
    InvalidInput,
    OfferNotFound,
    QuotaError,
)
from billable.ledger import audit, closing, fastconsume, holds, spend, sql
from billable.ledger import grants as granting
from billable.ledger.idempotency import claim_key
from billable.ledger.retry import retrying
from billable.models import IdempotencyKey, Offer, Order, OrderItem, QuotaBatch
from billable.validation import action_type_text as _action_type
from billable.validation import (
    coerce_user_id,
    metadata_dict,
    normalize_product_key,
    optional_key,
    positive_int,
    resolve_offer,
)


def _quota_answer(key: str, found: tuple[str, int] | None) -> dict[str, Any]:
    if found is None:
        return {"can_use": False, "product_key": key, "remaining": 0,
                "message": f"No active quota for {key}"}
    name, total = found
    return {"can_use": True, "product_key": key, "product_name": name, "remaining": total,
            "message": f"Available: {name} ({total} left)"}


def _grant_line(line: Any) -> tuple[Offer | int, OrderItem | None]:
    if not isinstance(line, (tuple, list)) or len(line) != 2:
        raise InvalidInput("Each grant must be an (offer, order_item) pair", field="grants")
    offer, order_item = line
    if order_item is not None and (not isinstance(order_item, OrderItem) or order_item.pk is None):
        raise InvalidInput("order_item must be a saved OrderItem or None", field="order_item")
    if isinstance(offer, (Offer, int)) and not isinstance(offer, bool):
        return offer, order_item  # checked by the grant itself, without a query here
    return resolve_offer(offer, include_inactive=True), order_item


class TransactionService:
    """Grant, check, consume, hold, exchange, expire and revoke quota; all balance changes."""

    # -- reads ----------------------------------------------------------------------------

    @classmethod
    def check_quota(cls, user_id: Any, product_key: str) -> dict[str, Any]:
        """Whether the user can use ``product_key`` now, and how much is left (one query)."""
        key = normalize_product_key(product_key)
        found = sql.spendable_summary(user_id=coerce_user_id(user_id), key=key,
                                      now=timezone.now())
        return _quota_answer(key, found)

    @classmethod
    async def acheck_quota(cls, user_id: Any, product_key: str) -> dict[str, Any]:
        """Async twin of :meth:`check_quota`."""
        return await sync_to_async(cls.check_quota)(user_id, product_key)

    @classmethod
    def get_balance(cls, user_id: Any, product_key: str) -> int:
        """Sum of the spendable remaining units of ``product_key`` (one query)."""
        key = normalize_product_key(product_key)
        found = sql.spendable_summary(user_id=coerce_user_id(user_id), key=key,
                                      now=timezone.now())
        return found[1] if found else 0

    @classmethod
    async def aget_balance(cls, user_id: Any, product_key: str) -> int:
        """Async twin of :meth:`get_balance`."""
        return await sync_to_async(cls.get_balance)(user_id, product_key)

    # -- grants ---------------------------------------------------------------------------

    @classmethod
    @retrying
    def grant_many(cls, user_id: Any, grants: Sequence[tuple[Any, OrderItem | None]], *,
                   source: str = "purchase", metadata: dict[str, Any] | None = None
                   ) -> list[QuotaBatch]:
        """Grant several ``(offer, order_item)`` lines at once, in a constant number of queries.

        One batch per offer item, quantity × ``order_item.quantity``, one CREDIT per batch with
        ``action_type=source`` and ``related_object = order_item or offer``. Period products
        already running are extended (the new batch starts when the current one ends).
        """
        uid, meta = coerce_user_id(user_id), metadata_dict(metadata)
        parsed = [_grant_line(line) for line in grants]
        with transaction.atomic():
            return granting.grant_lines(user_id=uid, grants=parsed, source=_action_type(source),
                                      metadata=meta, now=timezone.now())

    @classmethod
    async def agrant_many(cls, user_id: Any, grants: Sequence[tuple[Any, OrderItem | None]],
                          *, source: str = "purchase", metadata: dict[str, Any] | None = None
                          ) -> list[QuotaBatch]:
        """Async twin of :meth:`grant_many`."""
        return await sync_to_async(cls.grant_many)(user_id, grants, source=source,
                                                   metadata=metadata)

    @classmethod
    @retrying
    def grant_offer(cls, user_id: Any, offer: Offer | str | int,
                    order_item: OrderItem | None = None, source: str = "purchase",
                    metadata: dict[str, Any] | None = None, *,
                    idempotency_key: str | None = None) -> list[QuotaBatch]:
        """Grant one offer (instance, SKU or pk); a repeated ``idempotency_key`` returns the
        batches of the first grant, a key reused for another request raises
        :class:`~billable.exceptions.IdempotencyConflict`."""
        uid, meta = coerce_user_id(user_id), metadata_dict(metadata)
        key = optional_key(idempotency_key)
        target, order_item = _grant_line((offer, order_item))
        source = _action_type(source)
        if key is None:
            return cls.grant_many(uid, [(target, order_item)], source=source, metadata=meta)
        target_pk = target.pk if isinstance(target, Offer) else target
        request = {"offer": target_pk, "order_item": getattr(order_item, "pk", None),
                   "source": source}
        with transaction.atomic():
            earlier = claim_key(user_id=uid, key=key, operation="grant", request=request,
                                result={})
            if earlier is not None:
                ids = earlier.result.get("batch_ids", [])
                return list(QuotaBatch.objects.filter(pk__in=ids).order_by("created_at", "id"))
            batches = granting.grant_lines(user_id=uid, grants=[(target, order_item)],
                                         source=source,
                                         metadata={**meta, "idempotency_key": key},
                                         now=timezone.now())
            result = {"batch_ids": [str(b.pk) for b in batches]}
            IdempotencyKey.objects.filter(user_id=uid, key=key).update(result=result)
            return batches

    @classmethod
    async def agrant_offer(cls, user_id: Any, offer: Offer | str | int,
                           order_item: OrderItem | None = None, source: str = "purchase",
                           metadata: dict[str, Any] | None = None, *,
                           idempotency_key: str | None = None) -> list[QuotaBatch]:
        """Async twin of :meth:`grant_offer`."""
        return await sync_to_async(cls.grant_offer)(user_id, offer, order_item, source,
                                                    metadata, idempotency_key=idempotency_key)

    # -- spending -------------------------------------------------------------------------

    @classmethod
    def consume_quota(cls, user_id: Any, product_key: str, action_type: str = "usage",
                      amount: int = 1, action_id: Any = None, idempotency_key: Any = None,
                      metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Debit ``amount`` units of ``product_key`` atomically, in the configured order.

        Returns ``{"success": True, "message": "Quota consumed", "usage_id", "remaining",
        "metadata"}`` or a failure dict with ``error`` ``quota_exhausted`` /
        ``insufficient_funds`` / ``idempotency_conflict``. Invalid input raises.
        """
        uid, key = coerce_user_id(user_id), normalize_product_key(product_key)
        count, action = positive_int(amount), _action_type(action_type)
        action_key = optional_key(action_id, field="action_id")
        idem, meta = optional_key(idempotency_key), metadata_dict(metadata)
        try:
            return spend.consume(user_id=uid, key=key, amount=count, action_type=action,
                                 action_id=action_key, idempotency_key=idem, metadata=meta)
        except (QuotaError, IdempotencyConflict) as refused:
            return dict(failure_result(refused))

    @classmethod
    async def aconsume_quota(cls, user_id: Any, product_key: str, action_type: str = "usage",
                             amount: int = 1, action_id: Any = None,
                             idempotency_key: Any = None,
                             metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Async twin of :meth:`consume_quota`.

        On PostgreSQL a consume the first spendable batch covers runs as one statement on the
        async pool, in the event loop (:meth:`afast_consume_quota`); everything else is
        :meth:`consume_quota` in a worker thread, with the same rows, answers and errors.
        """
        done = await cls.afast_consume_quota(user_id, product_key, action_type, amount,
                                             action_id, idempotency_key, metadata)
        if done is not None:
            return done
        return await sync_to_async(cls.consume_quota)(user_id, product_key, action_type, amount,
                                                      action_id, idempotency_key, metadata)

    @classmethod
    async def afast_consume_quota(cls, user_id: Any, product_key: str,
                                  action_type: str = "usage", amount: int = 1,
                                  action_id: Any = None, idempotency_key: Any = None,
                                  metadata: dict[str, Any] | None = None
                                  ) -> dict[str, Any] | None:
        """The success dict of :meth:`consume_quota` when the consume ran as one statement on
        the async pool (no thread hop), or ``None``: nothing was written and the caller runs
        the general path (:meth:`consume_quota`), which gives every other answer — invalid
        input, a short or missing quota, a replayed or conflicting key, several batches, a
        period product, SQLite, ``BILLABLE_ASYNC_CONSUME = False`` (``docs/performance.md``).
        """
        try:
            uid, key = coerce_user_id(user_id), normalize_product_key(product_key)
            count, action = positive_int(amount), _action_type(action_type)
            action_key = optional_key(action_id, field="action_id")
            idem, meta = optional_key(idempotency_key), metadata_dict(metadata)
        except BillableError:
            return None  # the general path raises it (after its own checks, in its order)
        return await fastconsume.aconsume(
            user_id=uid, key=key, amount=count, action_type=action, action_id=action_key,
            idempotency_key=idem, metadata=meta, using=DEFAULT_DB_ALIAS)

    @classmethod
    def exchange(cls, user_id: Any, offer_id: Any = None, offer: Offer | None = None,
                 metadata: dict[str, Any] | None = None, *,
                 idempotency_key: str | None = None) -> dict[str, Any]:
        """Spend the currency product named by ``offer.currency`` and grant the offer.

        Raises :class:`OfferNotFound`, :class:`CurrencyError` or :class:`InvalidPrice`; a
        short balance returns the consume failure dicts. Under an ``idempotency_key`` already
        used for another request, every refusal is :class:`IdempotencyConflict` instead (and
        a request the key already answered replays that answer, whatever changed since).
        """
        uid, meta = coerce_user_id(user_id), metadata_dict(metadata)
        key = optional_key(idempotency_key)
        named = offer if offer is not None else offer_id
        try:
            target = resolve_offer(named)
        except OfferNotFound:
            replayed = spend.answer_unknown_offer(user_id=uid, named=named, idempotency_key=key)
            if replayed is None:
                raise
            return replayed
        try:
            return spend.exchange(user_id=uid, offer=target, metadata=meta,
                                  idempotency_key=key)
        except QuotaError as refused:
            return dict(failure_result(refused))

    @classmethod
    async def aexchange(cls, user_id: Any, offer_id: Any = None, offer: Offer | None = None,
                        metadata: dict[str, Any] | None = None, *,
                        idempotency_key: str | None = None) -> dict[str, Any]:
        """Async twin of :meth:`exchange`."""
        return await sync_to_async(cls.exchange)(user_id, offer_id, offer, metadata,
                                                 idempotency_key=idempotency_key)

    # -- holds ----------------------------------------------------------------------------

    @classmethod
    def reserve_quota(cls, user_id: Any, product_key: str, amount: int = 1, ttl: Any = None,
                      idempotency_key: Any = None, metadata: dict[str, Any] | None = None, *,
                      action_type: str = "usage") -> str:
        """Hold ``amount`` units now; return the reservation id (str).

        Raises :class:`QuotaExhausted` / :class:`InsufficientFunds` when it cannot hold.
        """
        return holds.reserve(
            user_id=coerce_user_id(user_id), key=normalize_product_key(product_key),
            amount=positive_int(amount),
            ttl=holds.ttl_delta(ttl), idempotency_key=optional_key(idempotency_key),
            metadata=metadata_dict(metadata), action_type=_action_type(action_type),
        )

    @classmethod
    async def areserve_quota(cls, user_id: Any, product_key: str, amount: int = 1,
                             ttl: Any = None, idempotency_key: Any = None,
                             metadata: dict[str, Any] | None = None, *,
                             action_type: str = "usage") -> str:
        """Async twin of :meth:`reserve_quota`."""
        return await sync_to_async(cls.reserve_quota)(user_id, product_key, amount, ttl,
                                                      idempotency_key, metadata,
                                                      action_type=action_type)

    @classmethod
    def commit_reservation(cls, reservation_id: Any, amount: int | None = None
                           ) -> dict[str, Any]:
        """Settle all (or ``amount``) of a hold; the rest goes back. Idempotent."""
        return holds.commit(reservation_id=reservation_id, amount=amount)

    @classmethod
    async def acommit_reservation(cls, reservation_id: Any, amount: int | None = None
                                  ) -> dict[str, Any]:
        """Async twin of :meth:`commit_reservation`."""
        return await sync_to_async(cls.commit_reservation)(reservation_id, amount)

    @classmethod
    def release_reservation(cls, reservation_id: Any) -> bool:
        """Return a hold to the wallet; True once released, False if it was committed."""
        return holds.release(reservation_id=reservation_id)

    @classmethod
    async def arelease_reservation(cls, reservation_id: Any) -> bool:
        """Async twin of :meth:`release_reservation`."""
        return await sync_to_async(cls.release_reservation)(reservation_id)

    # -- closing batches ------------------------------------------------------------------

    @classmethod
    def expire_batches(cls, *, user_id: Any = None) -> int:
        """Release expired holds, then expire past-due batches (DEBIT of the remainder).

        Returns the number of batches expired.
        """
        uid = coerce_user_id(user_id) if user_id is not None else None
        holds.release_expired(user_id=uid)
        return closing.expire_due(user_id=uid)

    @classmethod
    async def aexpire_batches(cls, *, user_id: Any = None) -> int:
        """Async twin of :meth:`expire_batches`."""
        return await sync_to_async(cls.expire_batches)(user_id=user_id)

    @classmethod
    def revoke_order_items(cls, order: Order | Any, reason: str = "refund") -> int:
        """Revoke the batches granted by ``order`` (DEBIT of the remainder); return the count."""
        return closing.revoke_order(order=order, reason=_action_type(reason))

    @classmethod
    async def arevoke_order_items(cls, order: Order | Any, reason: str = "refund") -> int:
        """Async twin of :meth:`revoke_order_items`."""
        return await sync_to_async(cls.revoke_order_items)(order, reason)

    # -- audit ----------------------------------------------------------------------------

    @classmethod
    def check_ledger(cls, user_id: Any = None) -> list[str]:
        """Ledger invariant violations for all users or one (empty list: consistent)."""
        return audit.check_ledger(user_id=coerce_user_id(user_id) if user_id is not None else None)

    @classmethod
    async def acheck_ledger(cls, user_id: Any = None) -> list[str]:
        """Async twin of :meth:`check_ledger`."""
        return await sync_to_async(cls.check_ledger)(user_id)



#: Ledger signals are sent with ``sender=TransactionService`` (the engine never imports this).
audit.register_sender(TransactionService)

__all__ = ["TransactionService"]
