"""Settings of the bot processes the fault tests start (``runbot``, ``billable_refunds``).

The database is the test's own clone (``DATABASE_URL``); connections are persistent and
health-checked, as docs/delivery.md recommends for long-lived bot processes.
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

DATABASES["default"]["CONN_MAX_AGE"] = None
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if os.environ.get("FAULTS_PGBOUNCER") == "1":
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True

BOT_KIT_DISPATCHER = "tests.bot_kit.faults.bot.build_dispatcher"
BOT_KIT_REDIS_URL = os.environ.get("FAULTS_REDIS_URL") or None
