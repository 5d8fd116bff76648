"""The scoring domain's Celery tasks, one module per area: `rescore` (bulk chunks, real-time
and pending rescores, the KPI rollup, the runs sweep), `ml` (training, model scoring),
`preview` (impact previews), `jobs` (the sweep of queued jobs), `routing` (the SLA sweep).
Celery's autodiscovery imports this package; importing the modules here registers every task
with the worker. Tasks are thin: take ids, call a service, return."""

from scoring.tasks import jobs, ml, preview, rescore, routing

__all__ = ["jobs", "ml", "preview", "rescore", "routing"]
