"""API keys: create, revoke, and authenticate a bearer token (settings token or stored key).

A key is ``bk_`` followed by 43 URL-safe characters from :func:`secrets.token_urlsafe` (256
random bits). Only its SHA-256 is stored. A fast hash is right here, unlike for passwords: a
password is guessable, so its hash must be slow to make guessing expensive; a 256-bit random
key cannot be guessed at any hashing speed, and a slow hash (bcrypt, PBKDF2, argon2) would add
tens of milliseconds to every API request for no protection. The SHA-256 also lets the key be
found through a unique index in one query, where a salted slow hash could not be.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from billable.conf import billable_settings
from billable.exceptions import InvalidInput, NotFound
from billable.models import ApiKey
from billable.scopes import ADMIN, UnknownScope, grants, normalize_scopes

KEY_PREFIX = "bk_"
#: Characters of a key kept in clear (``ApiKey.prefix``) to tell keys apart.
SHOWN_CHARACTERS = 11
#: Longest token looked up in the database (longer ones are refused without a query).
MAX_TOKEN_LENGTH = 128
#: ``last_used_at`` is written at most this often per key (not one write per request).
LAST_USED_RESOLUTION = timedelta(minutes=1)
#: The name of the principal of ``BILLABLE_API_TOKEN``.
SETTINGS_TOKEN_NAME = "BILLABLE_API_TOKEN"


@dataclass(frozen=True)
class Principal:
    """Who made an API request: a stored key or the settings token, and its scopes."""

    name: str
    scopes: frozenset[str]
    key_id: int | None = None

    def allows(self, scope: str) -> bool:
        """True if this principal may do what ``scope`` names."""
        return grants(self.scopes, scope)


def hash_token(token: str) -> str:
    """The SHA-256 hex digest stored for ``token``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_api_key(name: str, scopes: Iterable[str], *,
                   expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the key itself (shown once, never stored)."""
    clean_name = str(name or "").strip()
    if not clean_name or len(clean_name) > 100:
        raise InvalidInput("An API key needs a name of 1 to 100 characters", field="name")
    try:
        wanted = normalize_scopes(scopes)
    except UnknownScope as exc:  # keep the stable code ``unknown_scope``; name the field
        raise UnknownScope(str(exc), field="scopes") from exc
    if not wanted:
        raise InvalidInput("An API key needs at least one scope ('admin' for all)",
                           field="scopes")
    key = ApiKey(name=clean_name, scopes=wanted, expires_at=expires_at)
    token = assign_new_token(key)
    key.save()
    return key, token


def assign_new_token(key: ApiKey) -> str:
    """Give an unsaved ``key`` a fresh token (its prefix and hash); returns the token."""
    token = KEY_PREFIX + secrets.token_urlsafe(32)
    key.prefix, key.key_hash = token[:SHOWN_CHARACTERS], hash_token(token)
    return token


def revoke_api_key(key_id: Any) -> bool:
    """Revoke a key now; True if this call revoked it (False: it already was)."""
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().filter(pk=key_id).first()
        if key is None:
            raise NotFound(f"API key {key_id!r} not found")
        if key.revoked_at is not None:
            return False
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return True


def settings_principal(token: str) -> Principal | None:
    """The full-scope principal when ``token`` is ``BILLABLE_API_TOKEN`` (constant time)."""
    expected = billable_settings.API_TOKEN
    if not expected or not isinstance(expected, str):
        return None
    if hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8")):
        return Principal(SETTINGS_TOKEN_NAME, frozenset({ADMIN}))
    return None


def may_be_key(token: str) -> bool:
    """True if ``token`` has the shape of a stored key (else it is refused without a query)."""
    return token.startswith(KEY_PREFIX) and len(token) <= MAX_TOKEN_LENGTH


def authenticate_token(token: str | None) -> Principal | None:
    """The principal of a bearer token, or ``None`` when the API must answer 401.

    ``BILLABLE_API_TOKEN`` first (no query), then the stored keys: one query on the unique
    hash; revoked and expired keys are refused.
    """
    if not token:
        return None
    principal = settings_principal(token)
    if principal is not None:
        return principal
    if not may_be_key(token):
        return None
    digest = hash_token(token)
    key = ApiKey.objects.filter(key_hash=digest).first()
    now = timezone.now()
    if key is None or not hmac.compare_digest(key.key_hash, digest) or not key.is_active(now):
        return None
    _touch(key, now)
    return Principal(key.name, frozenset(key.scopes or ()), key.pk)


def _touch(key: ApiKey, now: datetime) -> None:
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)


__all__ = [
    "KEY_PREFIX",
    "Principal",
    "assign_new_token",
    "authenticate_token",
    "create_api_key",
    "hash_token",
    "may_be_key",
    "revoke_api_key",
    "settings_principal",
]
