from django.apps import AppConfig


class CasusultConfig(AppConfig):
    name = "casusult"
    verbose_name = "Casusult"
