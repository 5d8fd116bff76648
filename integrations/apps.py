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
