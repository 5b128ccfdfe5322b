"""``python -m examples.demo_bot [--webhook URL] [--port N]``: the demo bot against Telegram.

Needs ``TELEGRAM_BOT_TOKEN`` (and ``TELEGRAM_WEBHOOK_SECRET`` with ``--webhook``); migrate and
load the catalog first (``python3 dev.py demo`` does both, or ``python examples/manage.py
migrate && python examples/manage.py billable_seed_demo``). The same as ``python
examples/manage.py runbot [--webhook URL]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os


def main(argv: list[str] | None = None) -> None:
    """Parse the options, set up Django and run the bot (polling unless ``--webhook``)."""
    parser = argparse.ArgumentParser(prog="python -m examples.demo_bot")
    parser.add_argument("--webhook", metavar="BASE_URL",
                        help="public HTTPS base URL; updates are posted to /telegram/webhook")
    parser.add_argument("--host", default="127.0.0.1", help="webhook listen address")
    parser.add_argument("--port", type=int, default=8080, help="webhook listen port")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.demo_project.settings")
    import django

    django.setup()
    logging.basicConfig(level=logging.INFO)
    from bot_kit.inbox.webhook import WebhookSecretMissing
    from bot_kit.runner import BotConfigurationError, WebhookOptions, build_bot, run_bot
    from examples.demo_bot.bot import build_dispatcher

    try:
        bot = build_bot()
        mode = "webhook" if args.webhook else "polling"
        options = WebhookOptions(base_url=args.webhook, host=args.host, port=args.port)
        asyncio.run(run_bot(build_dispatcher(), bot, mode=mode, webhook=options))
    except (BotConfigurationError, WebhookSecretMissing) as exc:
        raise SystemExit(str(exc)) from None


if __name__ == "__main__":
    main()
