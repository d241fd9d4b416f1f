"""gunicorn settings: `gunicorn -c python:casusult.gunicorn_conf casusult.wsgi`.

Loaded by gunicorn's master before any worker imports Django, which is what lets it prepare the
Prometheus multi-process directory that every worker then inherits.
"""

import glob
import os
import shutil
import sys
import tempfile
from pathlib import Path

from gunicorn.config import Config

from settings.env import LOG_LEVELS, env_choice, env_str

# The site's serving defaults; GUNICORN_CMD_ARGS (e.g. "--bind 0.0.0.0:8080 --workers 5") or the
# command line override any of them, as gunicorn documents.
bind = "0.0.0.0:8000"
# Threads let one process wait on PostgreSQL and Redis for several requests at once; processes
# use the cores. 2 x cores + 1 processes is gunicorn's own rule of thumb.
workers = 2 * (os.cpu_count() or 1) + 1
threads = 4
worker_class = "gthread"
# A flush never runs in a request, so a slow request is a bug: kill it after this long.
timeout = 30
graceful_timeout = 30
# Longer than the load balancer's idle timeout (ALB: 60 s), or it sees resets (502s).
keepalive = 75
errorlog = "-"
loglevel = env_choice("LOG_LEVEL", LOG_LEVELS, "info")
# Django decides what is HTTPS (SECURE_PROXY_SSL_HEADER); trust the balancer's header here too.
forwarded_allow_ips = env_str("FORWARDED_ALLOW_IPS", "*")
# gunicornc's control socket is one fixed path per user: two servers on a host (a test next to
# `make serve`) would fight over it, and containers have no use for it.
control_socket_disable = True
# The ECS/Kubernetes-friendly default: no disk writes for the heartbeat files.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# Access lines only when asked for (--access-logfile - in GUNICORN_CMD_ARGS), read with gunicorn's
# own parser: the JSON logging below decides by the access logger's handlers, not by accesslog.
_cmd_args = Config().parser().parse_args(Config().get_cmd_args_from_env())
access_log = _cmd_args.accesslog is not None


def _gunicorn_argv():
    """The command line's arguments when gunicorn loads this file (`gunicorn …`,
    `python -m gunicorn …`); none when something else imports it."""
    program = Path(sys.argv[0])
    return sys.argv[1:] if "gunicorn" in (program.name, program.parent.name) else []


# gunicorn --preload imports the app in this master, before a gevent worker monkey-patches
# threading, sockets and queues: the locks, queues and thread-locals made then (the readiness
# probe's thread pool's among them, and those of the libraries) stay unpatched, and the first
# /readyz froze the worker's every request. Patched here, before the app loads, as gevent asks.
_final, _ = (
    Config().parser().parse_known_args([*Config().get_cmd_args_from_env(), *_gunicorn_argv()])
)
if _final.preload_app and "gevent" in str(_final.worker_class or worker_class).lower():
    from gevent import monkey

    monkey.patch_all()

# The default follows the settings module, as Django's own lines do: json under settings.prod.
_prod = os.environ.get("DJANGO_SETTINGS_MODULE", "").endswith("prod")
if env_choice("LOG_FORMAT", {"plain", "json"}, "json" if _prod else "plain") == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "casusult.jsonlog.JsonFormatter"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
        "loggers": {
            "gunicorn.error": {"handlers": ["console"], "level": loglevel.upper(), "propagate": False},
            # With a logconfig_dict gunicorn logs access lines whenever this logger has a handler.
            "gunicorn.access": {"handlers": ["console"] if access_log else [], "level": "INFO", "propagate": False},
        },
    }  # fmt: skip

# Every worker process writes its metrics here; /metrics sums them (casusult/metrics.py).
made_multiproc_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if made_multiproc_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="casusult-prometheus-")


def on_starting(server):
    """Start from zero: files of a previous run would be summed in as if alive."""
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)


def on_exit(server):
    if made_multiproc_dir:  # ours, and no process of this server counts any more
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
