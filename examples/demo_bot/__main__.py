"""``python -m examples.demo_bot [--webhook URL] [--port N]``: the demo bot against Telegram.

Needs ``TELEGRAM_BOT_TOKEN``; migrate and load the catalog first (``python3 dev.py demo`` does
both, or ``python examples/manage.py migrate && python examples/manage.py billable_seed_demo``).
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
    from bot_kit.runner import BotConfigurationError, build_bot, run_webhook
    from examples.demo_bot.bot import build_dispatcher
    from examples.demo_bot.runner import poll_with_refunds

    try:
        bot = build_bot()
    except BotConfigurationError as exc:
        raise SystemExit(str(exc)) from None
    dp = build_dispatcher()
    if args.webhook:
        run_webhook(dp, bot, base_url=args.webhook, host=args.host, port=args.port)
    else:
        asyncio.run(poll_with_refunds(dp, bot))


if __name__ == "__main__":
    main()
