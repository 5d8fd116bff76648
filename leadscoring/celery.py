"""The Celery application, wired the standard way: settings under the CELERY_ namespace,
tasks discovered in each installed app. (The filesystem broker's folders are made by the
settings.)"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leadscoring.settings")

app = Celery("leadscoring")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
