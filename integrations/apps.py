from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations"
    default_auto_field = "django.db.models.BigAutoField"

    @property
    def outcome_attributes(self) -> frozenset[str]:
        """The lead attributes every connector derives from the outcome; training reads them
        through ``scoring.ml.training.outcome_attribute_exclusions`` and never learns from
        them."""
        from integrations.connectors.hubspot import HubSpotConnector
        from integrations.connectors.mixpanel import MixpanelConnector
        from integrations.connectors.salesforce import SalesforceConnector

        return frozenset().union(
            *(
                c.outcome_attributes()
                for c in (SalesforceConnector, HubSpotConnector, MixpanelConnector)
            )
        )

    @property
    def ml_feature_exclusions(self) -> dict[str, tuple[str, str]]:
        """Column -> (kind, reason) for the columns the mappings of finished lead imports list
        as leakage or label ("leakage") or doubtful ("doubtful"); training reads them through
        ``scoring.ml.training.import_leakage_reasons``, whatever path the mapping file had."""
        from integrations.models import ImportJob

        found: dict[str, tuple[str, str]] = {}
        jobs = (
            ImportJob.objects.filter(kind="leads", status="done")
            .exclude(feature_exclusions={})
            .order_by("-id")
            .values_list("id", "mapping", "feature_exclusions")
        )
        for job_id, mapping, exclusions in jobs:
            for kind in ("leakage", "doubtful"):
                for column in (exclusions or {}).get(kind, []):
                    reason = (
                        f"the mapping {mapping or '(given)'} of import #{job_id} lists it as {kind}"
                    )
                    found.setdefault(column, (kind, reason))
        return found
