"""The WSGI application that gunicorn serves (settings.dev unless DJANGO_SETTINGS_MODULE says otherwise)."""

import os

from django.core.wsgi import get_wsgi_application

from casusult.startup import prepare_probes, refuse_bad_settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.dev")
application = get_wsgi_application()
refuse_bad_settings()
prepare_probes()
