"""``POST /customers/merge``: consolidate two billing accounts."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router

from billable.api.errors import error_status
from billable.exceptions import BillableError
from billable.schemas.common import responses
from billable.schemas.customers import CustomerMergeResponse, CustomerMergeSchema
from billable.services import CustomerService

router = Router()


@router.post("/customers/merge", response=responses(CustomerMergeResponse))
@error_status({BillableError: 400})
async def merge_customers(request: HttpRequest, data: CustomerMergeSchema) -> Any:
    """Move orders, batches, ledger, identities and referrals of the source to the target.

    Every refusal (same user, unknown user, conflicting identities) is ``400`` with the
    service message.
    """
    stats = await CustomerService.amerge_customers(target_user_id=data.target_user_id,
                                                   source_user_id=data.source_user_id)
    message = f"Successfully merged customer {data.source_user_id} into {data.target_user_id}"
    return {"success": True, "message": message, **stats}
