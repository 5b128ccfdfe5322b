"""IdentityService: resolve-or-create from (provider, external_id), lookups, profile merging."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model

from billable.exceptions import InvalidInput, UserNotFound
from billable.models import ExternalIdentity
from billable.services.identities import IdentityService, ResolvedIdentity

pytestmark = pytest.mark.django_db
User = get_user_model()


def _resolve(mode, **kwargs):
    if mode == "sync":
        return IdentityService.resolve_user(**kwargs)
    return async_to_sync(IdentityService.aresolve_user)(**kwargs)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_first_contact_creates_user_and_identity(mode):
    result = _resolve(mode, provider="telegram", external_id=" 9999 ",
                      profile={"first_name": "Test", "username": "tester"})
    assert isinstance(result, ResolvedIdentity)
    assert result.created_user and result.created_identity
    assert result.user.username == "billable_telegram_9999"
    assert (result.user.first_name, result.user.last_name) == ("Test", "")
    assert not result.user.has_usable_password()
    identity = ExternalIdentity.objects.get(provider="telegram", external_id="9999")
    assert identity.user_id == result.user.pk == result.user_id
    assert identity.metadata == {"first_name": "Test", "username": "tester"}


def test_second_contact_returns_the_same_user():
    first = IdentityService.resolve_user(provider="telegram", external_id=5)
    second = IdentityService.resolve_user(provider="telegram", external_id="5")
    assert second.user.pk == first.user.pk
    assert not second.created_user and not second.created_identity
    assert User.objects.count() == 1


def test_default_provider():
    result = IdentityService.resolve_user(external_id="abc")
    assert result.identity.provider == "default"
    assert result.user.username == "billable_default_abc"


def test_profile_is_merged_not_wiped():
    IdentityService.resolve_user(provider="telegram", external_id="7",
                                 profile={"first_name": "Ann", "language_code": "en"})
    IdentityService.resolve_user(provider="telegram", external_id="7")
    again = IdentityService.resolve_user(provider="telegram", external_id="7",
                                         profile={"language_code": "ru", "username": "ann"})
    again.identity.refresh_from_db()
    assert again.identity.metadata == {"first_name": "Ann", "language_code": "ru",
                                       "username": "ann"}


def test_never_attaches_identity_to_an_unrelated_account(make_user):
    squatter = make_user(username="billable_telegram_42")
    result = IdentityService.resolve_user(provider="telegram", external_id="42")
    assert result.created_user
    assert result.user.pk != squatter.pk
    assert result.user.username.startswith("billable_telegram_42_")
    assert not ExternalIdentity.objects.filter(user=squatter).exists()


def test_links_an_orphan_identity_to_a_new_user():
    orphan = ExternalIdentity.objects.create(provider="crm", external_id="c-1",
                                             metadata={"plan": "x"})
    result = IdentityService.resolve_user(provider="crm", external_id="c-1",
                                          profile={"email": "a@b.c"})
    assert result.created_user and not result.created_identity
    orphan.refresh_from_db()
    assert orphan.user_id == result.user.pk
    assert orphan.metadata == {"plan": "x", "email": "a@b.c"}


def test_long_external_id_gets_a_username_within_limits():
    external_id = "x" * 255
    result = IdentityService.resolve_user(provider="p" * 50, external_id=external_id)
    assert len(result.user.username) <= 150
    assert result.identity.external_id == external_id


@pytest.mark.parametrize("external_id", [None, "", "   ", "x" * 256, True, 1.5, ["1"]])
def test_bad_external_id_is_refused(external_id):
    with pytest.raises(InvalidInput):
        IdentityService.resolve_user(provider="telegram", external_id=external_id)
    assert not User.objects.exists()
    assert not ExternalIdentity.objects.exists()


@pytest.mark.parametrize("kwargs", [{"provider": "p" * 51}, {"provider": 5},
                                    {"profile": ["x"]}])
def test_bad_provider_or_profile_is_refused(kwargs):
    with pytest.raises(InvalidInput):
        IdentityService.resolve_user(external_id="1", **kwargs)


def test_create_false_only_looks_up():
    with pytest.raises(UserNotFound):
        IdentityService.resolve_user(provider="telegram", external_id="1", create=False)
    assert not User.objects.exists()
    created = IdentityService.resolve_user(provider="telegram", external_id="1")
    found = IdentityService.resolve_user(provider="telegram", external_id="1", create=False)
    assert found.user.pk == created.user.pk


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_get_user_is_lookup_only_and_user_id_wins(mode, make_user):
    get = (IdentityService.get_user if mode == "sync"
           else async_to_sync(IdentityService.aget_user))
    owner, other = make_user(), make_user()
    ExternalIdentity.objects.create(provider="telegram", external_id="77", user=owner)
    assert get(external_id="77", provider="telegram").pk == owner.pk
    assert get(user_id=other.pk, external_id="77", provider="telegram").pk == other.pk
    assert get(user_id=str(other.pk)).pk == other.pk
    assert get(external_id="missing", provider="telegram") is None
    assert get(user_id=123456) is None
    assert get(user_id="abc") is None
    assert get() is None
    assert get(external_id="  ") is None
    assert User.objects.count() == 2
