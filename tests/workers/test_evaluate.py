"""rules.evaluate: rules in order, forward adds destinations once each, drop adds none, stop ends."""

from __future__ import annotations

from rules.evaluate import Decision, InstanceFacts, evaluate
from rules.load import Rule

FACTS = InstanceFacts("1.2.840.10008.5.1.4.1.1.2", "1.2.3", "1.2.840.10008.1.2.1", "CT1", "ROUTER", "127.0.0.1")


def test_no_rules_no_destinations():
    assert evaluate((), FACTS) == Decision((), ())


def test_every_rule_without_conditions_matches_and_forwards_in_order():
    rules = (Rule("a", forward=("pacs", "archive")), Rule("b", forward=("ai", "pacs")))
    assert evaluate(rules, FACTS) == Decision(("pacs", "archive", "ai"), ("a", "b"))


def test_drop_adds_nothing_and_stop_ends_the_evaluation():
    rules = (Rule("first", forward=("pacs",)), Rule("drop", drop=True, stop=True), Rule("never", forward=("ai",)))
    assert evaluate(rules, FACTS) == Decision(("pacs",), ("first", "drop"))


def test_a_forward_that_stops():
    rules = (Rule("only", forward=("archive",), stop=True), Rule("later", forward=("pacs",)))
    assert evaluate(rules, FACTS) == Decision(("archive",), ("only",))
