"""A lean ASGI stack for the REST API: the API prefix skips the host's middleware.

Under ASGI, Django runs every sync-style middleware (``MiddlewareMixin``) of ``MIDDLEWARE``
through ``sync_to_async``: one thread hand-off for its ``process_request`` and one for its
``process_response`` (and one for a ``process_view``). The demo project's six middlewares cost
twelve hand-offs per request, more than the API's own work, and none of them does anything for a
bearer-token JSON API: sessions, CSRF (Ninja's views are exempt), messages and the session user
are for browser pages. The one check of theirs an API needs, the ``Host`` header against
``ALLOWED_HOSTS``, runs in the lean stack too (:class:`AllowedHostsMiddleware`, no hand-off).

:func:`lean_api` wraps the host's ASGI application: HTTP requests under the API's prefix go to
an :class:`APIHandler` (Django's own ASGI handler with its own, short, middleware list — empty by
default), everything else to the host application unchanged. The API's pages that a browser
opens with an admin session (``docs/`` and ``openapi.json``, see :mod:`billable.urls`) stay on
the host's full stack. URL resolution, the request signals (``request_started`` /
``request_finished``: connection clean-up and the pool hand-back), the auth, the scopes, the
error envelopes and the metrics are the same on both paths; only the host's middleware is
skipped. A host that needs one of its middlewares on the API too (``LocaleMiddleware`` for
translated messages, ``SecurityMiddleware`` for its headers) lists it in ``middleware=`` and pays
its hand-offs::

    # asgi.py
    from django.core.asgi import get_asgi_application

    application = get_asgi_application()

    from billable.api.asgi import lean_api  # app registry: after get_asgi_application()

    application = lean_api(application, prefix="/api/v1/billing/")

The plain mounting (``path("api/v1/billing/", include("billable.urls"))`` in ``urls.py``) still
serves the API; :func:`lean_api` only changes which middleware wraps it. Under WSGI there is
nothing to gain (sync middleware costs no hand-off there).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from asgiref.sync import ThreadSensitiveContext, markcoroutinefunction
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Where the demo project (and the README) mount the API.
DEFAULT_PREFIX = "/api/v1/billing/"
#: Paths under the prefix that stay on the host's full stack: the OpenAPI document and the
#: Swagger UI accept a staff user's admin session, which needs the host's session and auth
#: middleware (:func:`billable.urls.docs_guard`).
FULL_STACK_PATHS: tuple[str, ...] = ("docs", "openapi.json")

_loading = threading.Lock()


class AllowedHostsMiddleware:
    """Validate the ``Host`` header against ``ALLOWED_HOSTS`` (``request.get_host()``) before
    the view: in a full stack ``CommonMiddleware`` or CSRF does it, and an API without them must
    still refuse an unknown host (Django answers ``DisallowedHost`` with a 400). Async-native:
    costs no thread hop."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Awaitable[Any]]) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: Any) -> Any:
        request.get_host()  # raises DisallowedHost for a host not in ALLOWED_HOSTS
        return await self.get_response(request)


#: What every lean stack runs first (before the host's ``middleware=``).
BUILT_IN = (f"{__name__}.AllowedHostsMiddleware",)


@contextmanager
def _middleware_setting(middleware: Sequence[str]) -> Iterator[None]:
    """``settings.MIDDLEWARE`` reads ``middleware`` while a handler loads its chain."""
    with _loading:
        saved = settings.MIDDLEWARE
        settings.MIDDLEWARE = list(middleware)
        try:
            yield
        finally:
            settings.MIDDLEWARE = saved


def _context_takes_executor() -> bool:
    """True when asgiref's ``ThreadSensitiveContext`` accepts a reusable executor."""
    try:
        return "executor" in inspect.signature(ThreadSensitiveContext).parameters
    except (TypeError, ValueError):
        return False


class APIHandler(ASGIHandler):
    """Django's ASGI handler with its own middleware list instead of ``settings.MIDDLEWARE``
    (after :data:`BUILT_IN`: the ``ALLOWED_HOSTS`` check), and request threads that are
    reused.

    Django gives every ASGI request a new ``ThreadSensitiveContext``: a new thread, started on
    the request's first thread hop and joined after its last — a thread start per request.
    This handler keeps the threads: each request still runs its synchronous work on one thread
    of its own (the thread-sensitive rule: one request, one thread, one database connection),
    taken from a list of idle single-thread executors (at most :attr:`idle_threads` are kept)
    and put back when the request ends. With asgiref < 3.9 (no reusable executor) it falls back
    to Django's thread per request.

    Everything else is Django's: the request signals, the URL resolution against
    ``ROOT_URLCONF``, the exception handling, the response streaming and disconnects.
    """

    #: Idle request threads kept for the next requests (more are made under load, then ended).
    idle_threads = 32

    def __init__(self, middleware: Sequence[str] = ()) -> None:
        self.middleware = tuple(middleware)
        self._idle: list[ThreadPoolExecutor] = []
        self._reuse = _context_takes_executor()
        super().__init__()

    def load_middleware(self, is_async: bool = False) -> None:
        with _middleware_setting((*BUILT_IN, *self.middleware)):
            super().load_middleware(is_async=is_async)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._reuse or scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            executor = self._idle.pop()
        except IndexError:
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="billable-api")
        try:
            async with ThreadSensitiveContext(executor=executor):  # type: ignore[call-arg]
                await self.handle(scope, receive, send)
        finally:
            if len(self._idle) < self.idle_threads:
                self._idle.append(executor)
            else:
                executor.shutdown(wait=False)


def normalize_prefix(prefix: str) -> str:
    """``prefix`` with one leading and one trailing slash (``api/v1`` → ``/api/v1/``)."""
    inner = prefix.strip("/")
    return f"/{inner}/" if inner else "/"


def lean_api(application: ASGIApp, *, prefix: str = DEFAULT_PREFIX,
             middleware: Sequence[str] = ()) -> ASGIApp:
    """Serve HTTP requests under ``prefix`` with :class:`APIHandler`, the rest with
    ``application``.

    ``prefix`` is where ``urls.py`` mounts the API (the path after the ASGI ``root_path``);
    ``middleware`` lists the host middlewares that the API requests keep (none by default).
    Call it after ``get_asgi_application()`` (the handler needs the app registry).
    """
    base = normalize_prefix(prefix)
    handler = APIHandler(middleware)
    full_stack = tuple(base + path for path in FULL_STACK_PATHS)

    def is_api(scope: Scope) -> bool:
        if scope.get("type") != "http":
            return False
        path = str(scope.get("path", ""))
        root = str(scope.get("root_path", ""))
        if root and path.startswith(root):
            path = path[len(root):]
        return path.startswith(base) and not path.startswith(full_stack)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if is_api(scope):
            await handler(scope, receive, send)
        else:
            await application(scope, receive, send)

    app.api_handler = handler  # type: ignore[attr-defined]
    app.api_prefix = base  # type: ignore[attr-defined]
    return app


__all__ = ["BUILT_IN", "DEFAULT_PREFIX", "FULL_STACK_PATHS", "APIHandler",
           "AllowedHostsMiddleware", "lean_api", "normalize_prefix"]
