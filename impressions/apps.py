from django.apps import AppConfig


class ImpressionsConfig(AppConfig):
    name = "impressions"
    verbose_name = "Impressions"

    def ready(self):
        from . import checks, conf, recorder  # noqa: F401 (checks registers itself)

        conf.validate()
        recorder.connect_signals()
