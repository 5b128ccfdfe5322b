"""``POST /demo/trial-grant``: claim a free offer once per identity (reference flow)."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from ninja import Router

from billable.api.errors import error_status
from billable.api.users import resolve_user_id
from billable.exceptions import OfferNotFound
from billable.schemas.common import CommonResponse, responses
from billable.schemas.trials import TrialGrantSchema
from billable.services.trials import TrialService

router = Router()


def _claim(user_id: int, data: TrialGrantSchema,
           identities: dict[str, Any] | None) -> list[str]:
    batches = TrialService.claim_trial(user_id, data.sku, identities=identities,
                                       metadata=data.metadata)
    return [batch.product.name for batch in batches]


def _identities(data: TrialGrantSchema) -> dict[str, Any] | None:
    """Identities to record: the ones sent, else the external id sent, else ``None``.

    With ``None`` the service uses the user's own identities (or ``user:<id>``).
    """
    if data.identities:
        return dict(data.identities)
    if data.external_id is not None:
        return {data.provider or "default": data.external_id}
    return None


@router.post("/demo/trial-grant", response=responses(CommonResponse))
@error_status({OfferNotFound: 400})
async def grant_trial(request: HttpRequest, data: TrialGrantSchema) -> Any:
    """Grant the free offer ``sku`` once per identity, atomically and race-safely.

    A replay is ``400`` with ``data.error == "trial_already_used"``; paid (price > 0), unknown
    or inactive offers are ``400``. A new external identity is created first.
    """
    uid = await resolve_user_id(data)
    identities = _identities(data)
    products = await sync_to_async(_claim)(uid, data, identities)
    metadata = {**(data.metadata or {}), "identities": identities}
    return {"success": True, "message": "Trial granted",
            "data": {"products": products, "metadata": metadata}}
