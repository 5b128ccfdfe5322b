"""migrate_identities: creates identities from a user field, idempotent, dry-run, limit."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from billable.models import ExternalIdentity

pytestmark = pytest.mark.django_db
User = get_user_model()


def _run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("migrate_identities", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_creates_identities_from_a_field():
    u1 = User.objects.create_user(username="u1", password="x")
    u2 = User.objects.create_user(username="u2", password="x")
    out, _ = _run("username", "telegram")
    assert ExternalIdentity.objects.get(external_id="u1").user_id == u1.pk
    assert ExternalIdentity.objects.get(external_id="u2").user_id == u2.pk
    assert "Done. Created: 2, skipped (already exist): 0." in out


def test_second_run_skips_existing():
    User.objects.create_user(username="u1", password="x")
    _run("username", "telegram")
    out, _ = _run("username", "telegram")
    assert ExternalIdentity.objects.filter(provider="telegram").count() == 1
    assert "Done. Created: 0, skipped (already exist): 1." in out


def test_dry_run_writes_nothing():
    user = User.objects.create_user(username="u1", password="x")
    out, _ = _run("username", "telegram", "--dry-run")
    assert not ExternalIdentity.objects.exists()
    assert f"[DRY] Create identity provider='telegram' external_id='u1' user_id={user.pk}" in out
    assert "Created: 1" in out


def test_limit_counts_users():
    for name in ("u1", "u2", "u3"):
        User.objects.create_user(username=name, password="x")
    out, _ = _run("username", "telegram", "--limit=2")
    assert sorted(ExternalIdentity.objects.values_list("external_id", flat=True)) == ["u1", "u2"]
    assert "Created: 2" in out


@pytest.mark.parametrize("field", ["nonexistent_field", "get_full_name", "groups"])
def test_unknown_field_writes_error_and_creates_nothing(field):
    User.objects.create_user(username="u1", password="x")
    out, err = _run(field, "telegram")
    assert f"Model auth.User has no field '{field}'." in err
    assert not ExternalIdentity.objects.exists()
    assert "Done" not in out


def test_empty_values_are_ignored_and_two_fields_give_two_identities():
    alice = User.objects.create_user(username="alice", password="x", email="a@x.io")
    User.objects.create_user(username="bob", password="x", email="  ")
    _run("username", "telegram")
    out, _ = _run("email", "email")
    assert "Created: 1" in out
    by_provider = dict(ExternalIdentity.objects.filter(user=alice)
                       .values_list("provider", "external_id"))
    assert by_provider == {"telegram": "alice", "email": "a@x.io"}


def test_existing_identity_is_never_relinked():
    alice = User.objects.create_user(username="alice", password="x")
    other = User.objects.create_user(username="other", password="x")
    ExternalIdentity.objects.create(provider="telegram", external_id="alice", user=other)
    out, _ = _run("username", "telegram")
    assert ExternalIdentity.objects.get(external_id="alice").user_id == other.pk
    assert ExternalIdentity.objects.get(external_id="other").user_id == other.pk
    assert not ExternalIdentity.objects.filter(user=alice).exists()
    assert "Created: 1, skipped (already exist): 1." in out


def test_progress_bar_only_on_a_tty():
    class Tty(StringIO):
        def isatty(self) -> bool:
            return True

    User.objects.create_user(username="u1", password="x")
    out, err = StringIO(), Tty()
    call_command("migrate_identities", "username", "telegram", stdout=out, stderr=err)
    assert "\r[" in err.getvalue() and "1/1 users" in err.getvalue()
    assert "[" not in out.getvalue()
    _, plain_err = _run("username", "other")
    assert plain_err == ""
