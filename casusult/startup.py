"""The app servers' start-up check: a bad setting of any app stops them, as it stops manage.py."""

from django.core import checks
from django.core.exceptions import ImproperlyConfigured


def refuse_bad_settings():
    """Raise ImproperlyConfigured listing every error the system checks report (none: return).

    manage.py commands run the checks themselves; gunicorn and uvicorn do not, and a server that
    starts with a bad setting fails later, once per request or per flush.
    """
    errors = [message for message in checks.run_checks() if message.is_serious()]
    if errors:
        raise ImproperlyConfigured(
            "System checks failed:\n" + "\n".join(f"  {message}" for message in errors)
        )
