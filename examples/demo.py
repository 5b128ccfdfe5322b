"""The demo: ``python3 dev.py demo`` (or ``python -m examples.demo`` inside the venv).

1. migrates the demo database (SQLite in ``.demo/``, or ``DATABASE_URL``) and loads the demo
   catalog (``billable_seed_demo``);
2. without ``TELEGRAM_BOT_TOKEN``: plays a scripted conversation with the demo bot against a
   fake Telegram Bot API on 127.0.0.1 (real long polling) and prints it; with a token: runs the
   demo bot for real (``TELEGRAM_API_SERVER`` selects a self-hosted Bot API server);
3. serves the REST API and the admin on ``http://<host>:<port>/`` with uvicorn, after
   printing an admin login, the API token and a ``curl`` line to try.

Options: ``--no-serve`` (stop after step 2; the exit status says whether the story's checks
passed), ``--port`` (default 8000), ``--host`` (default 127.0.0.1; ``0.0.0.0`` lets n8n in a
Docker container reach the demo, with the Host names of ``DJANGO_ALLOWED_HOSTS``).
SIGINT (Ctrl+C) and SIGTERM stop every mode cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from typing import Any

HOST = "127.0.0.1"
ADMIN_USERNAME = "admin"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 dev.py demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-serve", action="store_true",
                        help="print the conversation and exit (no web server)")
    parser.add_argument("--port", type=int, default=8000, help="port of the web server")
    parser.add_argument("--host", default=HOST,
                        help="address the web server binds (default 127.0.0.1, this machine only)")
    return parser.parse_args(argv)


def banner(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(3, 66 - len(title)), flush=True)


def prepare_database() -> None:
    """Apply migrations and load the demo catalog (both are safe to repeat)."""
    from django.core.management import call_command

    banner("database")
    call_command("migrate", interactive=False, verbosity=0)
    print("migrations applied")
    call_command("billable_seed_demo")


def play_offline() -> bool:
    """The scripted conversation; True when every check passed."""
    from examples.demo_bot.conversation import play_offline as play

    banner("offline conversation (fake Telegram on 127.0.0.1, real polling)")
    conversation = asyncio.run(play())
    banner("checks")
    for name, ok in conversation.checks.items():
        print(f"  [{'ok' if ok else 'FAILED'}] {name}")
    passed = bool(conversation.checks) and all(conversation.checks.values())
    print("all checks passed" if passed else "some checks FAILED", flush=True)
    return passed


def admin_password() -> str:
    """Create (or reset) the demo superuser and return its new, generated password."""
    from django.contrib.auth import get_user_model

    password = secrets.token_urlsafe(12)
    user, _ = get_user_model().objects.get_or_create(
        username=ADMIN_USERNAME, defaults={"is_staff": True, "is_superuser": True})
    user.is_staff = user.is_superuser = True
    user.set_password(password)
    user.save()
    return password


def print_access(host: str, port: int) -> None:
    from django.conf import settings

    base = f"http://{HOST if host in ('0.0.0.0', '::') else host}:{port}"
    token = settings.BILLABLE_API_TOKEN
    banner("REST API and admin")
    print(f"admin:  {base}/admin/   user {ADMIN_USERNAME!r}, password {admin_password()!r}")
    print(f"API:    {base}/api/v1/billing/   token {token!r}")
    print(f"docs:   {base}/api/v1/billing/docs/   (log in to the admin first, or send the token)")
    print(f'try:    curl -s -H "Authorization: Bearer {token}" {base}/api/v1/billing/catalog')
    print("stop with Ctrl+C", flush=True)


def uvicorn_server(host: str, port: int) -> Any:
    import uvicorn

    config = uvicorn.Config("examples.demo_project.asgi:application", host=host, port=port,
                            log_level="info", lifespan="off")
    return uvicorn.Server(config)


def run_until_signal(*, bot: bool, host: str, web_port: int | None) -> None:
    """The demo bot (polling through the inbox) and/or the web server, until SIGINT/SIGTERM."""
    from bot_kit.runner import build_bot
    from examples.demo_bot.bot import build_dispatcher
    from examples.demo_bot.runner import serve

    if bot:
        banner("demo bot (polling Telegram)")
    web = uvicorn_server(host, web_port) if web_port is not None else None
    asyncio.run(serve(dp=build_dispatcher() if bot else None, bot=build_bot() if bot else None,
                      web=web))
    print("stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the process exit status."""
    args = parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.demo_project.settings")
    import django

    django.setup()
    prepare_database()
    if os.environ.get("TELEGRAM_BOT_TOKEN"):
        if not args.no_serve:
            print_access(args.host, args.port)
        run_until_signal(bot=True, host=args.host,
                         web_port=None if args.no_serve else args.port)
        return 0
    passed = play_offline()
    if args.no_serve or not passed:
        return 0 if passed else 1
    print_access(args.host, args.port)
    run_until_signal(bot=False, host=args.host, web_port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
