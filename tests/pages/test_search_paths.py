"""The queue's search gives the same leads whether it is answered from the matching ids (a rare
word) or by testing leads in score order (a common one)."""

from unittest import mock

from scoring.selectors import leads as lead_list
from tests.factories import LeadFactory


def test_a_search_finds_the_same_leads_by_either_path(client_as):
    for i, company in enumerate(["Acme Rockets", "ACME Labs", "Globex", "acme"]):
        LeadFactory(company=company, score=10 + i, band="Cold")
    client = client_as("manager")

    def found():
        body = client.get("/leads/", {"q": "acme"}).content.decode()
        return sorted(c for c in ("Acme Rockets", "ACME Labs", "Globex") if c in body)

    by_ids = found()
    with mock.patch.object(lead_list, "SEARCH_CANDIDATES", 1):
        by_walk = found()
    assert by_ids == by_walk == ["ACME Labs", "Acme Rockets"]
