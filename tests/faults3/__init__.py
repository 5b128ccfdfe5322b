"""Third peer round of fault injection, written from the SPEC and the user docs.

Real processes (uvicorn serving the demo project, ``runbot``, the job commands, a Celery
worker) on a PostgreSQL database of the test's own are killed with ``SIGKILL``, have their
database connections terminated or meet lock and statement timeouts; clients retry as the docs
tell them to. Every test then checks the money: paid once, charged once, ledger clean.
"""
