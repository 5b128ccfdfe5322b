"""Referral endpoints: attach a referrer, read how many users someone invited."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router

from billable.api.errors import error_status, fail
from billable.api.users import USER_REQUIRED, lookup_user_id
from billable.exceptions import InvalidInput, NotFound, ReferralError
from billable.schemas.common import CommonResponse, DbId, ExternalId, Label, responses
from billable.schemas.referrals import ReferralAssignSchema
from billable.services.identities import IdentityService
from billable.services.referrals import MSG_INVALID_IDS, ReferralService

router = Router()


async def _users_by_identity(data: ReferralAssignSchema) -> tuple[int, int]:
    """Both users behind existing identities (never creates one)."""
    provider = data.provider or "default"
    referrer = await IdentityService.aget_user(external_id=data.referrer_external_id,
                                               provider=provider)
    if referrer is None:
        raise NotFound("Referrer identity not found")
    referee = await IdentityService.aget_user(external_id=data.referee_external_id,
                                              provider=provider)
    if referee is None:
        raise NotFound("Referee identity not found")
    return int(referrer.pk), int(referee.pk)


@router.post("/referrals", response=responses(CommonResponse))
@error_status({NotFound: 400, ReferralError: 400})
async def assign_referral(request: HttpRequest, data: ReferralAssignSchema) -> Any:
    """Record that the referrer invited the referee.

    By ids (``referrer_id`` + ``referee_id``) or by existing identities (``provider``,
    ``referrer_external_id``, ``referee_external_id``). Repeating a pair is ``created: false``.
    Every refusal is ``400`` with a fixed message (see ``docs/api.md``).
    """
    if data.referrer_id is not None and data.referee_id is not None:
        referrer_id, referee_id = data.referrer_id, data.referee_id
    elif data.referrer_external_id is not None and data.referee_external_id is not None:
        referrer_id, referee_id = await _users_by_identity(data)
    else:
        raise InvalidInput(MSG_INVALID_IDS)
    referral, created = await ReferralService.aassign_referrer(referrer_id, referee_id,
                                                               metadata=data.metadata)
    return {"success": True, "message": "Referral assigned",
            "data": {"created": created, "referral_id": referral.pk,
                     "metadata": referral.metadata or {}}}


@router.get("/referrals/stats", response=responses(CommonResponse))
async def referral_stats(request: HttpRequest, user_id: DbId | None = None,
                         external_id: ExternalId | None = None,
                         provider: Label | None = None) -> Any:
    """How many users this user invited (``400 user_id is required`` if unknown)."""
    uid = await lookup_user_id(user_id=user_id, external_id=external_id, provider=provider)
    if uid is None:
        return fail(400, USER_REQUIRED, "user_required")
    count = await ReferralService.acount_referrals(uid)
    return {"success": True, "message": "Stats retrieved", "data": {"count": count}}
