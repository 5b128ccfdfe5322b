"""Resolve-or-create billing users from external identities ``(provider, external_id)``.

One service used by every interface that meets users by an outside id: the REST API (POST
endpoints resolve-or-create, GET endpoints only look up) and the bot kit's identity middleware.

Rules (see ``docs/orders.md``):

* two concurrent first contacts of the same identity create exactly one user (the unique
  ``(provider, external_id)`` index is the race guard);
* an identity is never attached to an unrelated pre-existing account: a new user is named
  ``billable_<provider>_<external_id>``; when that username is taken, another one is chosen;
* profile fields are merged into ``identity.metadata`` (keys present override, absent keys stay).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, IntegrityError, transaction
from django.db.models.signals import post_delete, post_save

from billable.exceptions import InvalidInput, UserNotFound
from billable.ledger import apool, fastconsume, sql
from billable.models import ExternalIdentity
from billable.validation import coerce_pk, metadata_dict, safe_text

MAX_PROVIDER_LENGTH = 50
MAX_EXTERNAL_ID_LENGTH = 255
_USERNAME_ATTEMPTS = 20


#: The user of one external identity (the unique ``(provider, external_id)`` index).
_USER_OF_IDENTITY = sql.raw(
    f'SELECT "user_id" FROM "{ExternalIdentity._meta.db_table}" '
    'WHERE "provider" = %s AND "external_id" = %s')


def normalize_provider(provider: Any) -> str:
    """A stripped provider name; ``None`` or blank means ``"default"``."""
    if provider is None:
        return "default"
    if not isinstance(provider, str):
        raise InvalidInput("provider must be a string")
    provider = provider.strip()
    if not provider:
        return "default"
    if len(provider) > MAX_PROVIDER_LENGTH:
        raise InvalidInput(f"provider must be at most {MAX_PROVIDER_LENGTH} characters")
    return safe_text(provider, field="provider")


def normalize_external_id(external_id: Any) -> str:
    """A stripped, non-empty external id of at most 255 characters (ints are accepted)."""
    if isinstance(external_id, bool) or not isinstance(external_id, (str, int)):
        raise InvalidInput("external_id cannot be empty or whitespace-only")
    value = str(external_id).strip()
    if not value:
        raise InvalidInput("external_id cannot be empty or whitespace-only")
    if len(value) > MAX_EXTERNAL_ID_LENGTH:
        raise InvalidInput(f"external_id must be at most {MAX_EXTERNAL_ID_LENGTH} characters")
    return safe_text(value, field="external_id")


def _normalize_profile(profile: Any) -> dict[str, Any]:
    if profile is None:
        return {}
    if not isinstance(profile, dict):
        raise InvalidInput("profile must be an object")
    return metadata_dict(profile, field="profile")


@dataclass(frozen=True)
class ResolvedIdentity:
    """The outcome of :meth:`IdentityService.resolve_user`."""

    user: Any
    identity: ExternalIdentity
    created_user: bool
    created_identity: bool

    @property
    def user_id(self) -> int:
        """Primary key of the billing user."""
        return int(self.user.pk)


class IdentityService:
    """Resolve-or-create of billing users from ``(provider, external_id)``."""

    @classmethod
    def get_user(cls, *, user_id: Any = None, external_id: Any = None,
                 provider: Any = "default") -> Any:
        """Look a user up, never create: ``user_id`` wins over the identity; ``None`` if absent."""
        User = get_user_model()
        if user_id is not None:
            pk = coerce_pk(user_id)
            return User.objects.filter(pk=pk).first() if pk is not None else None
        if external_id is None:
            return None
        try:
            provider = normalize_provider(provider)
            value = normalize_external_id(external_id)
        except InvalidInput:
            return None
        return ExternalIdentity.get_user_by_identity(value, provider)

    @classmethod
    async def aget_user(cls, *, user_id: Any = None, external_id: Any = None,
                        provider: Any = "default") -> Any:
        """Async twin of :meth:`get_user`."""
        return await sync_to_async(cls.get_user)(
            user_id=user_id, external_id=external_id, provider=provider)

    @classmethod
    def owner_of(cls, provider: Any, external_id: Any) -> Any:
        """The user id ``(provider, external_id)`` points to now, or ``None``.

        One probe of the ``(provider, external_id)`` unique index through a statement compiled
        once (``billable.ledger.sql``): cheap enough to run on every update of a cached user.
        A blank or oversized id is ``None`` (nobody), never an error.
        """
        try:
            key = normalize_provider(provider), normalize_external_id(external_id)
        except InvalidInput:
            return None
        return sql.owner_of(provider=key[0], external_id=key[1])

    @classmethod
    async def aowner_of(cls, provider: Any, external_id: Any) -> Any:
        """Async twin of :meth:`owner_of`."""
        return await sync_to_async(cls.owner_of)(provider, external_id)

    @classmethod
    def profile(cls, provider: Any, external_id: Any) -> dict[str, Any]:
        """The profile stored on the identity ``(provider, external_id)`` (its ``metadata``
        JSON object; ``{}`` when the identity is unknown)."""
        identity = (ExternalIdentity.objects.filter(provider=provider,
                                                    external_id=str(external_id))
                    .only("metadata").first())
        metadata = identity.metadata if identity is not None else None
        return dict(metadata) if isinstance(metadata, dict) else {}

    @classmethod
    def first_identity(cls, user_id: Any, provider: Any) -> ExternalIdentity | None:
        """The user's oldest identity on ``provider`` (e.g. the Telegram chat to write to)."""
        return (ExternalIdentity.objects.filter(user_id=user_id, provider=provider)
                .order_by("created_at", "id").first())

    @classmethod
    def watch(cls, on_change: Callable[[str, Any], None], *, uid: str) -> None:
        """Call ``on_change(external_id, user_id)`` after an identity row is saved or deleted
        in this process (connected once per ``uid``; ``user_id`` may be ``None``)."""

        def changed(sender: Any, instance: ExternalIdentity, **kwargs: Any) -> None:
            on_change(str(instance.external_id), instance.user_id)

        post_save.connect(changed, sender=ExternalIdentity, weak=False,
                          dispatch_uid=f"{uid}.save")
        post_delete.connect(changed, sender=ExternalIdentity, weak=False,
                            dispatch_uid=f"{uid}.delete")

    @classmethod
    def resolve_user(cls, *, provider: Any = "default", external_id: Any,
                     profile: dict[str, Any] | None = None,
                     create: bool = True) -> ResolvedIdentity:
        """Find the user behind ``(provider, external_id)``, creating identity and user if needed.

        Raises ``InvalidInput`` for a blank/oversized id, ``UserNotFound`` when ``create`` is
        false and nobody is linked yet.
        """
        provider = normalize_provider(provider)
        external_id = normalize_external_id(external_id)
        profile = _normalize_profile(profile)
        identity = (ExternalIdentity.objects.select_related("user")
                    .filter(provider=provider, external_id=external_id).first())
        if identity is not None and identity.user_id is not None:
            _merge_profile(identity, profile)
            return ResolvedIdentity(identity.user, identity, False, False)
        if not create:
            raise UserNotFound("User not found")
        return _create_or_link(provider, external_id, profile)

    @classmethod
    async def aresolve_user(cls, *, provider: Any = "default", external_id: Any,
                            profile: dict[str, Any] | None = None,
                            create: bool = True) -> ResolvedIdentity:
        """Async twin of :meth:`resolve_user`."""
        return await sync_to_async(cls.resolve_user)(
            provider=provider, external_id=external_id, profile=profile, create=create)


    @classmethod
    async def afast_user_id(cls, *, provider: Any = "default", external_id: Any) -> int | None:
        """The user linked to ``(provider, external_id)``, read in one statement on the async
        pool in the event loop (no thread hop): the external-id step of the async consume
        (``POST /wallet/consume`` with an ``external_id``). ``None`` when it cannot answer —
        nobody linked yet, invalid input, or no async consume here (SQLite, the settings off,
        inside ``atomic()``): the caller then runs :meth:`resolve_user`, which creates, links
        and raises as always. It writes nothing (a profile is :meth:`resolve_user`'s)."""
        if not fastconsume.available(DEFAULT_DB_ALIAS):
            return None
        try:
            key = (normalize_provider(provider), normalize_external_id(external_id))
        except InvalidInput:
            return None
        rows = await apool.run(DEFAULT_DB_ALIAS, _USER_OF_IDENTITY, key, label="identity lookup")
        if not rows or rows[0][0] is None:
            return None
        return int(rows[0][0])

    # -- change notices: bots in other processes evict their cached identities ------------------

    @classmethod
    def notices_supported(cls) -> bool:
        """Whether the database delivers identity change notices (PostgreSQL)."""
        return sql.notices_supported()

    @classmethod
    async def alisten_changes(cls) -> Any:
        """A new async connection LISTENing to identity change notices (the caller reads its
        ``notifies()`` and closes it); see ``docs/performance.md``.

        Raises ``ImproperlyConfigured`` (and closes the connection) when the triggers that send
        the notices are missing or disabled (``migrate billable`` not run): a listener must not
        trust its cache then.
        """
        conn = await apool.alisten(sql.LISTEN_IDENTITY, alias=DEFAULT_DB_ALIAS)
        try:
            cursor = await conn.execute(sql.IDENTITY_TRIGGERS_ON)
            row = await cursor.fetchone()
        except BaseException:
            await conn.close()
            raise
        if not row or not row[0]:
            await conn.close()
            raise ImproperlyConfigured(
                "The identity change triggers are missing or disabled on "
                f"{ExternalIdentity._meta.db_table} (run `manage.py migrate billable`)")
        return conn

    @classmethod
    def decode_change(cls, payload: str) -> sql.IdentityNotice:
        """The accounts and identities an identity change notice names."""
        return sql.decode_identity_notice(payload=payload)


def _merge_profile(identity: ExternalIdentity, profile: dict[str, Any]) -> None:
    """Merge ``profile`` into the identity metadata; write only when something changed."""
    current = identity.metadata if isinstance(identity.metadata, dict) else {}
    if not profile or {**current, **profile} == current:
        return
    with transaction.atomic():
        locked = ExternalIdentity.objects.select_for_update().get(pk=identity.pk)
        fresh = locked.metadata if isinstance(locked.metadata, dict) else {}
        identity.metadata = {**fresh, **profile}
        identity.save(update_fields=["metadata", "updated_at"])


def _create_or_link(provider: str, external_id: str,
                    profile: dict[str, Any]) -> ResolvedIdentity:
    """Insert (or lock) the identity row, then link a brand-new user to it, in one transaction.

    A concurrent first contact blocks on the unique index until the winner commits, then finds
    the identity already linked and returns it.
    """
    with transaction.atomic():
        created_identity = False
        try:
            with transaction.atomic():
                ExternalIdentity.objects.create(provider=provider, external_id=external_id,
                                                metadata={})
                created_identity = True
        except IntegrityError:
            pass
        identity = (ExternalIdentity.objects.select_for_update()
                    .get(provider=provider, external_id=external_id))
        if identity.user_id is not None:
            _merge_profile(identity, profile)
            return ResolvedIdentity(identity.user, identity, False, created_identity)
        user = _create_user(provider, external_id, profile)
        current = identity.metadata if isinstance(identity.metadata, dict) else {}
        identity.metadata = {**current, **profile}
        identity.user = user
        identity.save(update_fields=["user", "metadata", "updated_at"])
        return ResolvedIdentity(user, identity, True, created_identity)


def _username_candidates(provider: str, external_id: str, max_length: int) -> list[str]:
    """``billable_<provider>_<external_id>`` first, then suffixed variants, all within length."""
    base = f"billable_{provider}_{external_id}"
    digest = hashlib.sha256(base.encode("utf-8")).hexdigest()
    candidates = [base] if len(base) <= max_length else []
    for attempt in range(1, _USERNAME_ATTEMPTS):
        suffix = f"_{digest[:8]}" if attempt == 1 else f"_{digest[:8]}_{attempt}"
        candidates.append(base[: max_length - len(suffix)] + suffix)
    return candidates


def _create_user(provider: str, external_id: str, profile: dict[str, Any]) -> Any:
    """Create a fresh account; a taken username is skipped, never reused."""
    User = get_user_model()
    username_field = User.USERNAME_FIELD
    field = User._meta.get_field(username_field)
    max_length = getattr(field, "max_length", None) or 150
    names = {}
    for name in ("first_name", "last_name"):
        if _has_field(User, name) and isinstance(profile.get(name), str):
            limit = getattr(User._meta.get_field(name), "max_length", None) or 150
            names[name] = profile[name][:limit]
    for candidate in _username_candidates(provider, external_id, max_length):
        if User._default_manager.filter(**{username_field: candidate}).exists():
            continue
        user = User(**{username_field: candidate}, **names)
        if hasattr(user, "set_unusable_password"):
            user.set_unusable_password()
        try:
            with transaction.atomic():
                user.save()
        except IntegrityError:
            continue
        return user
    raise InvalidInput("Could not allocate a username for the new billing user")


def _has_field(model: Any, name: str) -> bool:
    try:
        model._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    return True


__all__ = [
    "IdentityService",
    "ResolvedIdentity",
    "coerce_pk",
    "normalize_external_id",
    "normalize_provider",
]
