"""Outcome fields are never features: what a CRM connector derives from the outcome (a
Salesforce status, a HubSpot lifecycle stage, an owner, a converted opportunity) is left out of
training, whatever the mappings say."""

from django.conf import settings

from integrations.connectors.base import Batch, LeadRecord
from integrations.connectors.hubspot import HubSpotConnector
from integrations.connectors.salesforce import SalesforceConnector
from integrations.services import write_batch
from scoring.ml import training
from scoring.ml.training import outcome_attribute_exclusions, train_models
from scoring.models import Lead
from tests.ml.conftest import make_dateless


def sync_outcome_fields(y) -> None:
    """What a Salesforce and a HubSpot sync write onto the same people, through the sync's
    own write path: fields set by sales once the outcome is known."""
    emails = dict(Lead.objects.values_list("email", "id"))
    salesforce, hubspot = [], []
    for i, won in enumerate(y):
        email = f"x{i}@{'gmail.com' if i % 3 else 'acme.com'}"
        assert email in emails
        related = {"owner_id": f"0055g00000AaB{i % 5:03d}AAV"}
        if won:
            related["converted_opportunity_id"] = f"0065g0000{i:06d}AAV"
        salesforce.append(
            LeadRecord(
                source="salesforce",
                external_id=f"00Q5g0000{i:06d}EAA",
                email=email,
                attributes={
                    "status": "Closed - Converted" if won else "Working - Contacted",
                    "opportunity_stage": "Closed Won" if won else "Prospecting",
                },
                related_ids=related,
            )
        )
        hubspot.append(
            LeadRecord(
                source="hubspot",
                external_id=str(1000 + i),
                email=email,
                attributes={
                    "lifecyclestage": "customer" if won else "lead",
                    "hs_lead_status": "CONNECTED" if won else "ATTEMPTED_TO_CONTACT",
                    "total_revenue": 5000 if won else 0,
                },
                related_ids={"owner_id": str(41629779 + i % 3)},
            )
        )
    for records in (salesforce, hubspot):
        counts = write_batch(Batch(leads=records))
        assert not counts.failures


def test_connectors_declare_the_attributes_they_derive_from_the_outcome(db):
    declared = outcome_attribute_exclusions()
    assert {"status", "opportunity_stage", "salesforce_owner_id"} <= declared
    assert {"salesforce_converted_opportunity_id", "salesforce_converted_account_id"} <= declared
    assert {"lifecyclestage", "hs_lead_status", "total_revenue", "hubspot_owner_id"} <= declared
    assert SalesforceConnector.outcome_attributes() | HubSpotConnector.outcome_attributes() == (
        declared
    )


def test_training_on_synced_data_gives_the_same_features_with_and_without_outcome_fields(
    db, no_mappings, monkeypatch
):
    y = make_dateless(600)
    without = train_models().features

    sync_outcome_fields(y)
    assert Lead.objects.filter(attributes__has_key="lifecyclestage").count() == 600
    assert Lead.objects.filter(attributes__has_key="status").count() == 600
    with_them = train_models().features

    assert with_them == without

    # The control: were the declarations ignored, the same data would hand the model the
    # outcome (so the equality above is the exclusion's doing, not an accident).
    monkeypatch.setattr(training, "outcome_attribute_exclusions", lambda: set())
    guarded = train_models()
    # Undeclared, the data-driven leakage guard still catches them ...
    reasons = {item["feature"]: item["reason"] for item in guarded.exclusions}
    assert "probable leakage" in reasons["attributes.lifecyclestage"]
    assert "probable leakage" in reasons["attributes.status"]
    # ... and with that guard off too, the model would read the outcome.
    monkeypatch.setattr(settings, "ML_LEAKAGE_AUC", 1.0)
    leaky = train_models().features
    assert {"attributes.status", "attributes.lifecyclestage"} <= set(leaky)
