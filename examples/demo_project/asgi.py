"""ASGI entry point of the demo project (``uvicorn examples.demo_project.asgi:application``).

The REST API under ``/api/v1/billing/`` is served by billable's lean ASGI stack
(:func:`billable.api.asgi.lean_api`): the same URLconf, views, auth and request signals, without
the project's session/CSRF/auth/messages middleware, which cost two thread hand-offs each per
request under ASGI and do nothing for a bearer-token API (its docs pages keep the full stack).

The demo serves its static files (the admin's CSS and JS) with Django's static files handler,
as ``runserver`` does, whether ``DEBUG`` is on or not (it is off by default); in production put
them behind your web server instead.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.demo_project.settings")
application = get_asgi_application()

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from billable.api.asgi import lean_api  # noqa: E402  (app registry: after the setup above)

application = lean_api(ASGIStaticFilesHandler(application), prefix="/api/v1/billing/")
