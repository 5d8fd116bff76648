"""factory_boy factories for the scoring domain."""

from __future__ import annotations

import datetime as dt

import factory
from django.utils import timezone

from scoring.models import Event, Identity, Lead, LeadProbability


class LeadFactory(factory.django.DjangoModelFactory):
    """`model_probability=p` stores the lead's probability (a LeadProbability row)."""

    class Meta:
        model = Lead
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"lead{n}@example.com")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    title = "Engineer"
    company = factory.Faker("company")
    employees = 250
    industry = "Software"
    country = "Germany"
    source = "web"
    created_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=60))

    @factory.post_generation
    def model_probability(lead: Lead, create: bool, extracted: float | None, **kwargs) -> None:
        if create and extracted is not None:
            LeadProbability.objects.create(lead=lead, probability=extracted)


class IdentityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Identity

    source = "api"
    external_id = factory.Sequence(lambda n: f"ext-{n}")
    lead = factory.SubFactory(LeadFactory)


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    source = "api"
    external_id = factory.Sequence(lambda n: f"evt-{n}")
    lead = factory.SubFactory(LeadFactory)
    event_type = "page_view"
    occurred_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=1))
    properties = factory.LazyFunction(dict)


def api_token(user) -> str:
    """A new API token of the user, as a client would send it (stored hashed)."""
    from knox.models import AuthToken

    return AuthToken.objects.create(user=user, expiry=None)[1]
