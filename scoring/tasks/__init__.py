"""The scoring domain's Celery tasks, one module per area: `rescore` (bulk chunks, real-time
and pending rescores, the KPI rollup), `ml` (training, model scoring), `preview` (impact
previews), `routing` (the SLA sweep). Celery's autodiscovery imports this package; importing
the modules here registers every task with the worker. Tasks are thin: take ids, call a
service, return."""

from scoring.tasks import ml, preview, rescore, routing

__all__ = ["ml", "preview", "rescore", "routing"]
