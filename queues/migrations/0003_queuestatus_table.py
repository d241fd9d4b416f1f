"""QueueStatus gets an empty table of its own: a model without one (managed = False) broke
`manage.py dumpdata` of the whole database, and the test databases Django serializes, with 'no
such table: queues_queuestatus'. Nothing is ever stored in it."""

from django.db import migrations, models

OPTIONS = {
    "default_permissions": ("view", "change"),
    "verbose_name": "queue status",
    "verbose_name_plural": "queue status",
}


class Migration(migrations.Migration):
    dependencies = [
        ("queues", "0002_queue_actions_permission"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AlterModelOptions(name="queuestatus", options=OPTIONS)],
            database_operations=[
                migrations.CreateModel(
                    name="QueueStatus",
                    fields=[("id", models.BigAutoField(primary_key=True, serialize=False))],
                    options=OPTIONS,
                ),
            ],
        ),
    ]
