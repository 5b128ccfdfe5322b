"""The inbox in the admin: read-only rows, dead letters found by a filter and re-queued."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from bot_kit.models import InboxUpdate

pytestmark = pytest.mark.django_db


def test_dead_updates_are_listed_and_requeued(admin_client: Any) -> None:
    dead = InboxUpdate.objects.create(bot_id=42, update_id=7, kind="message", state="dead",
                                      attempts=5, payload={"update_id": 7},
                                      last_error="ValueError: <script>bug</script>")
    done = InboxUpdate.objects.create(bot_id=42, update_id=8, kind="message", state="done",
                                      payload={"update_id": 8})
    url = reverse("admin:bot_kit_inboxupdate_changelist")
    listing = admin_client.get(url, {"state__exact": "dead"})
    assert listing.status_code == 200
    assert b"<script>bug" not in listing.content and b"&lt;script&gt;bug" in listing.content
    detail = admin_client.post(reverse("admin:bot_kit_inboxupdate_change", args=[dead.pk]),
                               {"state": "done"})
    assert detail.status_code == 403

    response = admin_client.post(url, {"action": "requeue",
                                       "_selected_action": [dead.pk, done.pk]})
    assert response.status_code == 302
    dead.refresh_from_db()
    assert (dead.state, dead.attempts, dead.claimed_by) == ("pending", 0, "")
    assert InboxUpdate.objects.get(pk=done.pk).state == "done"  # done rows stay done
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert shown == ["1 update re-queued."]  # pluralised through ngettext, translatable
