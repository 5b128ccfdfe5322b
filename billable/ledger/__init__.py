"""The ledger engine: every balance change, behind the public facades of ``billable.services``.

Keyword-only functions that take validated values (``billable.validation``) and run inside
``transaction.atomic`` with row locks in one global order (``locks.py``). The engine never
imports ``billable.services``, the API or the admin (``tests/architecture`` enforces it); its
failures are ``billable.exceptions`` classes, its only raw SQL is in ``sql.py``.

Modules: ``sql`` (compiled statements), ``wallet`` (lock, allocate, take, debit, give back),
``spend`` (consume, exchange), ``holds``, ``grants``, ``closing`` (expiry, revocation),
``periods``, ``snapshots``, ``idempotency``, ``locks``, ``retry`` (the one retry helper),
``audit`` (signals after commit, the invariant check), and the bot's gated fast path:
``fasthold`` (hold and settle as one statement each) and ``fastconsume`` (a consume one batch
covers, as one statement) on ``apool`` (async psycopg pools).
"""
