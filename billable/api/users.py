"""How endpoints find the billing user a request names.

A request names a user by ``user_id`` or by ``external_id`` + ``provider`` (``"default"`` when
omitted); ``user_id`` wins when both are given. GET endpoints only look users up; POST endpoints
resolve-or-create through :class:`~billable.services.identities.IdentityService`.
"""

from __future__ import annotations

from typing import Any

from billable.exceptions import InvalidInput, UserNotFound
from billable.services.identities import IdentityService

USER_REQUIRED = "user_id is required"
USER_NOT_FOUND = "User not found"


async def lookup_user_id(*, user_id: int | None = None, external_id: Any = None,
                         provider: str | None = None) -> int | None:
    """The id of an existing user, or ``None`` (never creates anything)."""
    if user_id is None and external_id is None:
        return None
    user = await IdentityService.aget_user(user_id=user_id, external_id=external_id,
                                           provider=provider or "default")
    return int(user.pk) if user is not None else None


async def existing_user_id(*, user_id: int | None = None, external_id: Any = None,
                           provider: str | None = None) -> int:
    """The id of an existing user; raises ``UserNotFound`` ("User not found") otherwise."""
    found = await lookup_user_id(user_id=user_id, external_id=external_id, provider=provider)
    if found is None:
        raise UserNotFound(USER_NOT_FOUND)
    return found


async def resolve_user_id(ref: Any) -> int:
    """POST semantics for a body with ``user_id`` / ``external_id`` / ``provider``.

    An unknown ``user_id`` is ``UserNotFound`` (an account is never created from a bare id); an
    external identity is resolved or created; neither given is ``InvalidInput``.
    """
    if ref.user_id is not None:
        return await existing_user_id(user_id=ref.user_id)
    if ref.external_id is not None:
        resolved = await IdentityService.aresolve_user(provider=ref.provider or "default",
                                                       external_id=ref.external_id)
        return resolved.user_id
    raise InvalidInput(USER_REQUIRED)


def resolve_user_id_sync(ref: Any) -> int:
    """Sync twin of :func:`resolve_user_id` (same answers, same exceptions), for an endpoint
    that does the user lookup and its service call in one thread hop."""
    if ref.user_id is not None:
        user = IdentityService.get_user(user_id=ref.user_id)
        if user is None:
            raise UserNotFound(USER_NOT_FOUND)
        return int(user.pk)
    if ref.external_id is not None:
        resolved = IdentityService.resolve_user(provider=ref.provider or "default",
                                                external_id=ref.external_id)
        return resolved.user_id
    raise InvalidInput(USER_REQUIRED)


async def aresolve_user_id_by_identity(provider: str, external_id: str) -> int:
    """0.2 helper kept for compatibility: resolve-or-create ``(provider, external_id)``."""
    resolved = await IdentityService.aresolve_user(provider=provider or "default",
                                                   external_id=external_id)
    return resolved.user_id


__all__ = [
    "USER_NOT_FOUND",
    "USER_REQUIRED",
    "aresolve_user_id_by_identity",
    "existing_user_id",
    "lookup_user_id",
    "resolve_user_id",
    "resolve_user_id_sync",
]
