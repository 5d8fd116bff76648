"""The scoring engine: pure Python + NumPy, no Django.

Rule-set documents in (`parse_ruleset`), compiled once (`compile_ruleset`), leads scored in
bulk from column arrays and behaviour aggregates (`score_leads`), explained (`breakdowns`).
DESIGN.md §4 is the contract; each module's docstring states the details it settles.
"""

from ._bulk import gc_paused
from .accounts import AccountScores, roll_up_accounts
from .behaviour import (
    BehaviourAggregates,
    CodedEvents,
    EventAggregates,
    EventTerm,
    RuleEventPlan,
    aggregate_coded_events,
    aggregate_events,
    code_events,
    condition_bits,
    rule_behaviour,
    rule_event_plan,
)
from .columns import FREE_EMAIL_DOMAINS, business_domain, email_domain_type
from .compiler import CompiledRuleSet, compile_ruleset
from .due import next_due_epochs
from .explain import breakdown, breakdowns, breakdowns_json, rule_label
from .scorer import (
    ROUNDING_EPSILON,
    LeadTable,
    ScoreResult,
    round_half_away_from_zero,
    score_leads,
)
from .spec import (
    ACCOUNT_METHODS,
    OPERATORS,
    RULE_KINDS,
    AccountRollup,
    AttributeRule,
    Band,
    Condition,
    EventRule,
    InactivityRule,
    Persona,
    PropertyTest,
    Rule,
    RuleSetInvalid,
    RuleSetSpec,
    ValidationIssue,
    issue_location,
    parse_ruleset,
    ruleset_to_document,
    where_value_document,
)

__all__ = [
    "ACCOUNT_METHODS",
    "FREE_EMAIL_DOMAINS",
    "OPERATORS",
    "ROUNDING_EPSILON",
    "RULE_KINDS",
    "AccountRollup",
    "AccountScores",
    "AttributeRule",
    "Band",
    "BehaviourAggregates",
    "CodedEvents",
    "CompiledRuleSet",
    "Condition",
    "EventAggregates",
    "EventRule",
    "EventTerm",
    "InactivityRule",
    "LeadTable",
    "Persona",
    "PropertyTest",
    "Rule",
    "RuleEventPlan",
    "RuleSetInvalid",
    "RuleSetSpec",
    "ScoreResult",
    "ValidationIssue",
    "aggregate_coded_events",
    "aggregate_events",
    "breakdown",
    "breakdowns",
    "breakdowns_json",
    "business_domain",
    "code_events",
    "compile_ruleset",
    "condition_bits",
    "email_domain_type",
    "gc_paused",
    "issue_location",
    "next_due_epochs",
    "parse_ruleset",
    "roll_up_accounts",
    "round_half_away_from_zero",
    "rule_behaviour",
    "rule_event_plan",
    "rule_label",
    "ruleset_to_document",
    "score_leads",
    "where_value_document",
]
