"""Tasks of an installed app: registered by autodiscovery, not by TASK_MODULES."""

from django.tasks import task

from tests.queues.tasks import MARKERS, markers_client


@task
def discovered_marker(name):
    markers_client().rpush(MARKERS, f"discovered:{name}")
    return name
