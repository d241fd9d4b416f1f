"""The ASGI application (settings.dev unless DJANGO_SETTINGS_MODULE says otherwise)."""

import os

from django.core.asgi import get_asgi_application

from casusult.startup import prepare_probes, refuse_bad_settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.dev")
# Django runs each request's sync work in a thread of its own: a connection kept past the request
# (CONN_MAX_AGE) would be one left open per request served, as Django's docs warn for ASGI.
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")
application = get_asgi_application()
refuse_bad_settings()
prepare_probes()
