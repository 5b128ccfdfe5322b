"""ASGI entry point of the demo project (``uvicorn examples.demo_project.asgi:application``).

With ``DEBUG`` on, static files (the admin's CSS and JS) are served by Django's static files
handler, as ``runserver`` does; in production put them behind your web server instead.
"""

import os

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.demo_project.settings")
application = get_asgi_application()

if settings.DEBUG:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)
