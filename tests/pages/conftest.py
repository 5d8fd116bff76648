import pytest

from tests.pages.factories import ScoredLeadFactory


@pytest.fixture
def rep_leads(role_users):
    """Three leads of sales1 (scores 90, 60, 30) and one of sales2 (score 80)."""
    sales1, sales2 = role_users["sales1"], role_users["sales2"]
    return {
        "hot": ScoredLeadFactory(owner=sales1, score=90, band="Hot", email="hot@acme.test"),
        "mql": ScoredLeadFactory(owner=sales1, score=60, band="MQL", email="mql@beta.test"),
        "warm": ScoredLeadFactory(owner=sales1, score=30, band="Warm", email="warm@gamma.test"),
        "other": ScoredLeadFactory(owner=sales2, score=80, band="Hot", email="other@delta.test"),
    }
