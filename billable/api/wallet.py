"""Wallet endpoints: quota checks, spendable batches, the ledger, consumption and exchange.

Reads come from ``billable.selectors`` (the one spendability rule: expired, not-yet-valid,
exhausted and revoked batches never count, whether or not the expiry job has run). Writes go
through ``TransactionService`` (sync, atomic) via its async twins.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from ninja import Router

from billable.api.cursor import encode_cursor, older_than
from billable.api.errors import fail, failure_result
from billable.api.users import (
    USER_REQUIRED,
    existing_user_id,
    lookup_user_id,
    resolve_user_id,
    resolve_user_id_sync,
)
from billable.conf import billable_settings
from billable.exceptions import BillableError, DatabaseBusy, OfferNotFound
from billable.models.base import normalize_key
from billable.schemas.common import (
    CommonResponse,
    DbId,
    ExternalId,
    Key,
    KeyFilter,
    Label,
    PageLimit,
    Ref,
    UtcDatetime,
    responses,
)
from billable.schemas.wallet import (
    ActiveBatchSchema,
    BalanceFeatureSchema,
    ExchangeSchema,
    QuotaBatchSchema,
    QuotaConsumeSchema,
    TransactionSchema,
    WalletBalanceSchema,
)
from billable.selectors.catalog import offer_by_sku
from billable.selectors.wallet import balance_rows, balances_from, ledger_rows, spendable_batches
from billable.services import BalanceService, IdentityService, TransactionService

router = Router()

#: Response header carrying the cursor of the next page of ``GET /wallet/transactions``.
NEXT_CURSOR_HEADER = "X-Next-Cursor"


@router.get("/balance", response=responses(BalanceFeatureSchema))
async def check_balance(request: HttpRequest, product_key: Key, user_id: DbId | None = None,
                        external_id: ExternalId | None = None,
                        provider: Label | None = None) -> Any:
    """Can the user use ``product_key`` now? Looks the user up only (never creates one).

    An unknown or missing user gives ``can_use: false`` with ``message: "user_id is required"``.
    """
    uid = await lookup_user_id(user_id=user_id, external_id=external_id, provider=provider)
    if uid is None:
        key = normalize_key(product_key)
        return {"can_use": False, "product_key": key, "remaining": 0, "message": USER_REQUIRED}
    return await TransactionService.acheck_quota(uid, product_key)


def _active_batches(user_id: int, product_key: str | None) -> list[dict[str, Any]]:
    batches = BalanceService.get_user_active_products(user_id, product_key=product_key)
    return [ActiveBatchSchema.model_validate(batch).model_dump() for batch in batches]


@router.get("/user-products", response=responses(list[ActiveBatchSchema]))
async def list_user_products(request: HttpRequest, user_id: DbId | None = None,
                             product_key: KeyFilter | None = None,
                             external_id: ExternalId | None = None,
                             provider: Label | None = None) -> Any:
    """The user's spendable batches in the 0.2 "user product" shape.

    ``400 user_id is required`` when the user is missing or unknown.
    """
    uid = await lookup_user_id(user_id=user_id, external_id=external_id, provider=provider)
    if uid is None:
        return fail(400, USER_REQUIRED, "user_required")
    key = normalize_key(product_key) or None
    return await sync_to_async(_active_batches)(uid, key)


@router.get("/wallet", response=responses(WalletBalanceSchema))
async def get_wallet(request: HttpRequest, user_id: DbId | None = None,
                     external_id: ExternalId | None = None,
                     provider: Label | None = None) -> Any:
    """Spendable units per product key (``404 User not found`` for an unknown user)."""
    uid = await existing_user_id(user_id=user_id, external_id=external_id, provider=provider)
    rows = [row async for row in balance_rows(uid)]
    return {"user_id": uid, "balances": balances_from(rows)}


@router.get("/wallet/batches", response=responses(list[QuotaBatchSchema]))
async def list_wallet_batches(request: HttpRequest, user_id: DbId | None = None,
                              external_id: ExternalId | None = None,
                              provider: Label | None = None) -> Any:
    """The user's spendable batches, oldest first (``404 User not found`` if unknown)."""
    uid = await existing_user_id(user_id=user_id, external_id=external_id, provider=provider)
    return [batch async for batch in spendable_batches(uid)]


def _page_size(limit: int | None) -> int:
    ceiling = max(1, int(billable_settings.TRANSACTIONS_PAGE_SIZE))
    return min(limit or ceiling, ceiling)


@router.get("/wallet/transactions", response=responses(list[TransactionSchema]))
async def list_wallet_transactions(
    request: HttpRequest, response: HttpResponse, user_id: DbId | None = None,
    external_id: ExternalId | None = None, provider: Label | None = None,
    product_key: KeyFilter | None = None, action_type: Label | None = None,
    date_from: UtcDatetime | None = None, cursor: Ref | None = None,
    limit: PageLimit | None = None,
) -> Any:
    """The user's ledger, newest first, one page at a time (default and maximum page: 100).

    When more rows exist, the ``X-Next-Cursor`` response header holds an opaque cursor; pass it
    back as ``?cursor=`` (with the same filters) for the next page. A malformed cursor is
    ``400 Invalid cursor``.
    """
    uid = await existing_user_id(user_id=user_id, external_id=external_id, provider=provider)
    rows = ledger_rows(uid, product_key=product_key, action_type=action_type,
                       date_from=date_from, before=older_than(cursor) if cursor else None)
    size = _page_size(limit)
    page = [row async for row in rows[: size + 1]]
    if len(page) > size:
        page = page[:size]
        response[NEXT_CURSOR_HEADER] = encode_cursor(page[-1].created_at, page[-1].id)
    return page


def _consume(data: QuotaConsumeSchema) -> dict[str, Any]:
    """The user lookup (or creation) and the consume in one thread hop: the hot endpoint pays
    one hand-off to the database thread, not one per step.

    A bare ``user_id`` without an ``idempotency_key`` is checked *after* the consume, and only
    when it did not succeed: a successful debit locked a batch of that user, so the user
    exists; a refused one wrote nothing, and an unknown user still gets ``404 User not found``
    (the answer the check before the consume gave). With an ``idempotency_key`` the user is
    checked first, so no key is ever claimed for a user that does not exist.
    """
    checked_later = data.user_id is not None and not data.idempotency_key
    uid = data.user_id if checked_later else resolve_user_id_sync(data)
    try:
        result = TransactionService.consume_quota(
            uid, data.product_key, action_type=data.action_type, amount=data.amount,
            action_id=data.action_id, idempotency_key=data.idempotency_key,
            metadata=data.metadata,
        )
    except DatabaseBusy:
        raise
    except BillableError:
        if checked_later:
            resolve_user_id_sync(data)  # an unknown user is 404 before any other refusal
        raise
    if checked_later and not result.get("success"):
        resolve_user_id_sync(data)
    return result


async def _fast_consume(data: QuotaConsumeSchema) -> dict[str, Any] | None:
    """The consume as one statement in the event loop, or ``None`` (nothing was written).

    Safe before the user check: a nonexistent user holds no batch, so nothing is spent and no
    idempotency key is claimed (the keyed statement rolls its key back with the consume it could
    not make); the general path then answers ``404 User not found`` first, as always. An
    ``external_id`` request first reads its linked user in one statement
    (``IdentityService.afast_user_id``); an identity not linked yet is the general path's,
    which creates it.
    """
    user_id = data.user_id
    if user_id is None:
        if data.external_id is None:
            return None
        user_id = await IdentityService.afast_user_id(provider=data.provider,
                                                      external_id=data.external_id)
        if user_id is None:
            return None
    return await TransactionService.afast_consume_quota(
        user_id, data.product_key, action_type=data.action_type, amount=data.amount,
        action_id=data.action_id, idempotency_key=data.idempotency_key, metadata=data.metadata)


@router.post("/wallet/consume", response=responses(CommonResponse))
async def consume_quota(request: HttpRequest, data: QuotaConsumeSchema) -> Any:
    """Spend ``amount`` units (default 1) of ``product_key``, oldest batch first.

    A new external identity is created first. ``400`` with the service message when the quota
    is missing or short; ``409`` when ``idempotency_key`` was used for a different request; a
    replay of the same request returns the original usage.

    A consume that the user's first spendable batch covers runs in the event loop, as one
    statement on the async pool (``TransactionService.afast_consume_quota``): it can only
    succeed for a user who holds that batch, so the user check is the statement itself (an
    ``external_id`` costs one more statement, reading its linked user).
    Everything else — and every answer but a success — is :func:`_consume` in one thread hop,
    with the same rows, answers and errors.
    """
    result = await _fast_consume(data)
    if result is None:
        result = await sync_to_async(_consume)(data)
    if not result.get("success"):
        return failure_result(result)
    return {"success": True, "message": "Quota consumed", "data": result}


@router.post("/exchange", response=responses(CommonResponse))
async def exchange(request: HttpRequest, data: ExchangeSchema) -> Any:
    """Spend internal currency (the product named by the offer's currency) on an offer.

    ``404 Offer not found`` for an unknown or inactive SKU; ``400`` with the service message for
    a missing/invalid currency or a short balance; ``409`` for a reused idempotency key — also
    when the request would otherwise be refused (the service decides, on its failure path).
    """
    uid = await resolve_user_id(data)
    offer = await offer_by_sku(data.sku)  # a retired one too: the service refuses it
    if offer is None and not data.idempotency_key:
        return fail(404, OfferNotFound.default_message, OfferNotFound.code)
    result = await TransactionService.aexchange(
        uid, offer=offer, metadata=data.metadata, idempotency_key=data.idempotency_key
    )
    if not result.get("success", True):
        return failure_result(result)
    return {"success": True, "message": "Exchange successful", "data": result}


__all__ = ["NEXT_CURSOR_HEADER", "router"]
