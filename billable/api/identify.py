"""``POST /identify``: resolve-or-create the billing user behind an external identity."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from billable.schemas.common import responses
from billable.schemas.identities import IdentifySchemaIn, IdentifySchemaOut
from billable.services.identities import IdentityService
from billable.services.trials import TrialService

router = Router()


@router.post("/identify", response=responses(IdentifySchemaOut))
async def identify(request: HttpRequest, data: IdentifySchemaIn) -> dict[str, object]:
    """Find or create the user for ``(provider, external_id)``; call it first in every flow.

    Profile fields are merged into the identity metadata (absent keys are kept).
    ``trial_eligible`` is false once this identity claimed a trial.
    """
    provider = data.provider or "default"
    resolved = await IdentityService.aresolve_user(
        provider=provider, external_id=data.external_id, profile=data.profile
    )
    identity = resolved.identity
    eligible = await TrialService.ais_eligible({identity.provider: identity.external_id})
    return {
        "user_id": resolved.user_id,
        "identity_id": identity.pk,
        "provider": identity.provider,
        "external_id": identity.external_id,
        "created_identity": resolved.created_identity,
        "created_user": resolved.created_user,
        "trial_eligible": eligible,
        "metadata": identity.metadata or {},
    }
