from django.apps import AppConfig


class ImpressionsConfig(AppConfig):
    name = "impressions"
    verbose_name = "Impressions"

    def ready(self):
        from . import conf, recorder

        conf.validate()
        recorder.connect_signals()
