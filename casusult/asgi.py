"""The ASGI application (settings.dev unless DJANGO_SETTINGS_MODULE says otherwise)."""

import os

from django.core.asgi import get_asgi_application

from casusult.startup import prepare_probes, refuse_bad_settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.dev")
application = get_asgi_application()
refuse_bad_settings()
prepare_probes()
