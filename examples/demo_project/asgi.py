"""ASGI entry point of the demo project (``uvicorn examples.demo_project.asgi:application``).

The demo serves its static files (the admin's CSS and JS) with Django's static files handler,
as ``runserver`` does, whether ``DEBUG`` is on or not (it is off by default); in production put
them behind your web server instead.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.demo_project.settings")
application = get_asgi_application()

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

application = ASGIStaticFilesHandler(application)
