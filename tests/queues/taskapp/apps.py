from django.apps import AppConfig


class TaskAppConfig(AppConfig):
    """An installed app of the test settings: its tasks module is found by autodiscovery."""

    name = "tests.queues.taskapp"
    label = "queues_taskapp"
