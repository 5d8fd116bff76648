"""The lead page shows the model's top reasons once a model has scored the lead."""

from django.test import Client

from tests.factories import LeadFactory


def test_the_lead_page_loads_the_model_reasons_when_the_lead_has_a_probability(client_as):
    client: Client = client_as("ops")
    with_model = LeadFactory(model_probability=0.42)
    without = LeadFactory()
    assert (
        f'hx-get="/models/explain/{with_model.pk}/"'
        in client.get(f"/leads/{with_model.pk}/").content.decode()
    )
    assert "/models/explain/" not in client.get(f"/leads/{without.pk}/").content.decode()
    fragment = client.get(f"/models/explain/{with_model.pk}/")
    assert fragment.status_code == 200
    assert b"No model is active" in fragment.content
