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


def prepare_probes():
    """Build the default task backend's client now, in each server process as it loads the
    application: a cold boto3 client (0.3 to 1 s) built by the first /readyz made it miss
    READINESS_TIMEOUT and answer 503."""
    from queues.health import warm_up_queue  # wsgi.py imports this module before settings

    warm_up_queue()
