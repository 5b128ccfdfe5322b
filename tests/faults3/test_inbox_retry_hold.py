"""An inbox retry of a gated update whose first attempt *failed* after its hold committed.

The hold's commit went through but its answer was lost (the connection broke at the commit):
the attempt fails with a transient database error and the inbox schedules a retry. That retry
is not a takeover (no lease ran out), yet the hold it finds belongs to the failed attempt,
which is over — the inbox never runs two attempts of an update at once. The retry must release
it and run the handler: the user gets the answer and is charged once, instead of the update
being dropped as "in progress" with its units held until the hold expires.

In-process (the demo bot's Dispatcher, the inbox worker, a fake Bot API session) on either
database; the lost answer is simulated at the billing port's call into billable.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db.utils import OperationalError

from bot_kit.inbox import store
from bot_kit.inbox.polling import raw_update
from bot_kit.inbox.worker import InboxWorker
from bot_kit.testing import FakeSession, UpdateFactory, make_bot

pytestmark = pytest.mark.django_db(transaction=True)


def customer(telegram_id: int) -> int:
    from django.contrib.auth import get_user_model

    from billable.models import ExternalIdentity
    from billable.services import TransactionService

    call_command("billable_seed_demo", verbosity=0)
    user = get_user_model().objects.create(username=f"tg{telegram_id}")
    ExternalIdentity.objects.create(provider="telegram", external_id=str(telegram_id), user=user)
    TransactionService.grant_offer(user.id, "EXCHANGE_PREDICT_10", source="manual_grant")
    return int(user.pk)


def outcome(user_id: int) -> tuple[list[str], int, int]:
    from billable.models import Reservation, Transaction
    from billable.services import TransactionService

    states = sorted(Reservation.objects.filter(user_id=user_id).values_list("state", flat=True))
    debits = Transaction.objects.filter(user_id=user_id, direction="DEBIT",
                                        action_type="usage").count()
    return states, debits, TransactionService.get_balance(user_id, "PREDICTIONS")


async def test_a_retried_gated_update_whose_failed_attempt_left_its_hold_runs_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from billable.services import HoldService
    from examples.demo_bot.bot import build_dispatcher

    factory = UpdateFactory(start_update_id=61_000, first_user_id=610_001)
    person = factory.user()
    user_id = await sync_to_async(customer)(person.id)
    real_place = HoldService.aplace
    lost = []

    async def place_then_lose_the_answer(*args: Any, **kwargs: Any) -> Any:
        placed = await real_place(*args, **kwargs)  # committed
        if not lost:
            lost.append(placed)
            raise OperationalError("server closed the connection unexpectedly")
        return placed

    monkeypatch.setattr(HoldService, "aplace", place_then_lose_the_answer)
    session = FakeSession()
    bot = make_bot(session)
    worker = InboxWorker(build_dispatcher(), bot, lease=30, base_delay=0.0, max_delay=0.0)
    predict = factory.command("predict", user=person)
    await store.astore(bot.id, raw_update(predict))

    first = await worker.process_due()
    assert first == {predict.update_id: "pending"}, first  # a transient failure: retried
    assert lost, "the hold was never placed"
    second = await worker.process_due()
    assert second == {predict.update_id: "done"}, second
    answers = [str(c.params["text"]) for c in session.calls_to("sendMessage")]
    assert len(answers) == 1 and "🔮" in answers[0], answers
    states, debits, left = await sync_to_async(outcome)(user_id)
    assert (states, debits, left) == (["COMMITTED", "RELEASED"], 1, 9)
    await bot.session.close()
