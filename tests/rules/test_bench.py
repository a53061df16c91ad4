"""bench/rules.py runs end to end at tiny counts and prints its figures (which mean nothing at these counts)."""

from __future__ import annotations

import re
from io import BytesIO

import pytest
from pydicom import dcmread

from bench import rules as bench
from rules.evaluate import InstanceFacts

pytestmark = pytest.mark.timeout(60)


def test_the_rules_benchmark_prints_a_positive_median(capsys):
    assert bench.main(["--instances", "8", "--rounds", "1"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    match = re.match(r"rule evaluation: 50 rules, 8 evaluations of 8 headers: median ([0-9.]+) µs CPU", first)
    assert match and float(match.group(1)) > 0


def test_the_benchmark_rules_are_valid_and_match_its_headers():
    rules = bench.compiled_rules()
    assert len(rules.rules) == bench.RULE_COUNT
    matched = []
    for index, data in enumerate(bench.realistic_headers(20)):
        header = dcmread(BytesIO(data), stop_before_pixels=True)
        facts = InstanceFacts(str(header.SOPClassUID), "1.2", "1.2.840.10008.1.2.1", bench.CALLING[index % 7], "R",
                              f"10.{index}.1.2", header)
        decision = rules.evaluate(facts)
        assert decision.matched[-1] == "everything"
        matched.extend(decision.matched[:-1])
    assert len(set(matched)) >= 5  # the other rules are not dead weight: several match some header
