"""Two concurrent first contacts of one Telegram id create one user (PostgreSQL)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from billable.models import ExternalIdentity
from billable.services.identities import IdentityService
from tests.helpers import requires_postgres, run_in_threads

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("threads", [2, 6])
def test_concurrent_first_contacts_create_one_user(threads):
    def contact(index: int) -> int:
        result = IdentityService.resolve_user(provider="telegram", external_id="5454776146",
                                              profile={f"k{index}": index})
        return int(result.user.pk)

    results = run_in_threads(threads, contact)

    assert all(isinstance(r, int) for r in results), results
    assert len(set(results)) == 1
    assert get_user_model().objects.count() == 1
    identity = ExternalIdentity.objects.get(provider="telegram", external_id="5454776146")
    assert identity.user_id == results[0]
    assert identity.metadata == {f"k{i}": i for i in range(threads)}
