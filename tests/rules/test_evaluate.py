"""RuleSet: rules in order, actions of every matching rule, stop, drop, morphs per forward, prefetch templates,
once keys, explanations, header needs, and reading headers without pixel data."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydicom import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from rules.decision import Decision, Forward, Morph, MorphKind, Prefetch
from rules.evaluate import Outcome, RuleOutcome, RuleSet, evaluate, read_header
from tests.rules.support import CT, SC, compiled, facts, header, load

pytestmark = pytest.mark.timeout(30)

ISSUE_EXAMPLE = """
- name: chest CT to the AI node and the PACS
  when:
    Modality: CT
    BodyPartExamined: [CHEST, THORAX]
    StudyDescription: {regex: '(?i)lung|chest'}
    calling_ae: {glob: 'CT*'}
    (0008,0080): {exists: true}
  forward: [ai, pacs]
  morph:
    - set: {InstitutionName: Main Hospital}
    - delete: [OtherPatientIDs]
    - replace: {AccessionNumber: {regex: '^ACC', with: 'MH'}}
- name: drop secondary captures from the CT lab
  when: {sop_class: SecondaryCaptureImageStorage, calling_ae: CTLAB}
  drop: true
  stop: true
- name: prefetch priors for new MR studies
  when: {Modality: MR}
  once_per: study
  prefetch:
    from: pacs
    to: workstation
    match: {PatientID: '{PatientID}'}
    studies: 3
- name: everything else to the PACS
  forward: [pacs]
"""
CHEST = "chest CT to the AI node and the PACS"
DROP = "drop secondary captures from the CT lab"
PRIORS = "prefetch priors for new MR studies"
REST = "everything else to the PACS"
MORPHS = (
    Morph(MorphKind.SET, "InstitutionName", "Main Hospital"),
    Morph(MorphKind.DELETE, "OtherPatientIDs"),
    Morph(MorphKind.REPLACE, "AccessionNumber", "MH", pattern="^ACC"),
)


@pytest.fixture
def issue_rules(tmp_path) -> RuleSet:
    return compiled(tmp_path, ISSUE_EXAMPLE)


def chest_ct():
    return header(Modality="CT", BodyPartExamined="CHEST", StudyDescription="Lung screening", InstitutionName="X")


def test_a_chest_ct_goes_to_ai_and_pacs_morphed_and_pacs_keeps_the_first_rules_copy(issue_rules):
    decision = issue_rules.evaluate(facts(chest_ct(), calling_ae="CT2"))
    assert decision == Decision((Forward("ai", MORPHS, CHEST), Forward("pacs", MORPHS, CHEST)), (), (CHEST, REST))
    assert decision.destinations == ("ai", "pacs")


def test_a_secondary_capture_from_the_ct_lab_is_dropped_and_stops(issue_rules):
    decision = issue_rules.evaluate(facts(header(Modality="OT"), sop_class=SC, calling_ae="CTLAB"))
    assert decision == Decision((), (), (DROP,), dropped=True)


def test_an_mr_fires_a_prefetch_with_its_template_filled_and_a_study_key(issue_rules):
    mr = header(Modality="MR", PatientID="P42", StudyInstanceUID="1.2.3.9")
    decision = issue_rules.evaluate(facts(mr, calling_ae="MR1"))
    assert decision.prefetches == (Prefetch(PRIORS, "pacs", "workstation", (("PatientID", "P42"),), 3, "1.2.3.9"),)
    assert decision.forwards == (Forward("pacs", (), REST),) and decision.matched == (PRIORS, REST)


def test_a_prefetch_whose_template_or_key_is_missing_does_not_fire_and_says_why(issue_rules):
    decision = issue_rules.evaluate(facts(header(Modality="MR", StudyInstanceUID="1.2"), calling_ae="MR1"), explain=True)
    assert decision.prefetches == () and decision.matched == (PRIORS, REST)
    assert f"rule '{PRIORS}' matched: prefetch not fired: PatientID '{{PatientID}}' names a value the instance does " \
           "not have" in decision.explanation
    decision = issue_rules.evaluate(facts(header(Modality="MR", PatientID="P"), calling_ae="MR1"), explain=True)
    assert decision.prefetches == ()
    assert f"rule '{PRIORS}' matched: prefetch not fired: once_per study: the instance has no StudyInstanceUID" \
           in decision.explanation


def test_the_explanation_says_why_each_rule_did_not_match(issue_rules):
    decision = issue_rules.evaluate(facts(header(Modality="MR", BodyPartExamined="HEAD"), calling_ae="XR1"), explain=True)
    assert decision.explanation == (
        f"rule '{CHEST}' failed: Modality: 'MR' is not 'CT'; BodyPartExamined: 'HEAD' is none of 'CHEST', 'THORAX'; "
        "StudyDescription is missing, so it does not match regex '(?i)lung|chest'; calling_ae: 'XR1' does not match "
        "glob 'CT*'; (0008,0080) is missing",
        f"rule '{DROP}' failed: sop_class: '{CT}', 'CTImageStorage' is not '{SC}'; calling_ae: 'XR1' is not 'CTLAB'",
        f"rule '{PRIORS}' matched: prefetch not fired: PatientID '{{PatientID}}' names a value the instance does not "
        "have",
        f"rule '{REST}' matched",
    )
    assert decision == issue_rules.evaluate(facts(header(Modality="MR", BodyPartExamined="HEAD"), calling_ae="XR1"))


def test_trace_reports_rules_after_a_stop_as_not_reached(issue_rules):
    _, outcomes = issue_rules.trace(facts(header(), sop_class=SC, calling_ae="CTLAB"))
    assert outcomes[1:] == (
        RuleOutcome(DROP, Outcome.MATCHED),
        RuleOutcome(PRIORS, Outcome.NOT_REACHED, (f"rule '{DROP}' stopped the evaluation",)),
        RuleOutcome(REST, Outcome.NOT_REACHED, (f"rule '{DROP}' stopped the evaluation",)),
    )


def test_explanations_of_blocks_and_several_operators(tmp_path):
    rules = compiled(tmp_path, """
        - name: r
          when:
            any: [{Modality: CT}, {Modality: MR, StationName: {glob: 'A*'}}]
            not: {BodyPartExamined: HEAD}
            SeriesNumber: {ge: 2, lt: 5}
            Rows: {not: 512}
          forward: [pacs]
    """)
    dataset = header(Modality="US", BodyPartExamined="HEAD", SeriesNumber="9", Rows=512)
    (line,) = rules.evaluate(facts(dataset), explain=True).explanation
    assert line == ("rule 'r' failed: none of 'any' held: Modality: 'US' is not 'CT' | Modality: 'US' is not 'MR'; "
                    "StationName is missing, so it does not match glob 'A*'; 'not' failed: BodyPartExamined is 'HEAD'; "
                    "SeriesNumber: '9' is not >= 2 and < 5; Rows: '512' is '512', which the rule excludes")


def test_rules_run_in_order_drop_without_stop_lets_later_rules_act(tmp_path):
    rules = compiled(tmp_path, """
        - {name: first, when: {Modality: CT}, forward: [ai]}
        - {name: drop, when: {calling_ae: CT1}, drop: true}
        - {name: last, forward: [pacs, ai]}
    """)
    decision = rules.evaluate(facts(header(Modality="CT"), calling_ae="CT1"))
    assert decision.matched == ("first", "drop", "last") and decision.dropped
    assert decision.forwards == (Forward("ai", (), "first"), Forward("pacs", (), "last"))


def test_templates_fill_several_fields_literals_braces_and_facts(tmp_path):
    rules = compiled(tmp_path, """
        - name: p
          once_per: patient
          prefetch:
            from: pacs
            to: WS
            match: {PatientID: '{PatientID}^{{x}}', IssuerOfPatientID: '{calling_ae}-{OtherPatientIDs}',
                    ModalitiesInStudy: 'CT'}
            studies: 1
        - name: s
          once_per: series
          prefetch: {from: pacs, to: WS, match: {PatientID: '{PatientID}'}}
    """)
    dataset = header(PatientID="P1", OtherPatientIDs=["A", "B"], SeriesInstanceUID="1.2.5")
    decision = rules.evaluate(facts(dataset, calling_ae="CT9"))
    assert decision.prefetches == (
        Prefetch("p", "pacs", "WS", (("PatientID", "P1^{x}"), ("IssuerOfPatientID", "CT9-A\\B"),
                                     ("ModalitiesInStudy", "CT")), 1, "P1"),
        Prefetch("s", "pacs", "WS", (("PatientID", "P1"),), 3, "1.2.5"),
    )


def test_a_decision_survives_the_queue_round_trip(issue_rules):
    decision = issue_rules.evaluate(facts(chest_ct()))
    assert Decision.from_dict(decision.to_dict()) == decision
    mr = issue_rules.evaluate(facts(header(Modality="MR", PatientID="P", StudyInstanceUID="1.2")))
    assert Decision.from_dict(mr.to_dict()) == mr


def test_needs_header_only_when_a_rule_looks_at_elements(tmp_path):
    assert not compiled(tmp_path, "- {when: {calling_ae: A, sop_class: CTImageStorage, peer_ip: 10.0.0.0/8}, "
                                  "forward: [pacs]}").needs_header
    assert compiled(tmp_path, "- {when: {any: [{calling_ae: A}, {Modality: CT}]}, forward: [pacs]}").needs_header
    assert compiled(tmp_path, "- {prefetch: {from: pacs, to: W, match: {PatientID: '{PatientID}'}}}").needs_header
    assert compiled(tmp_path, "- {prefetch: {from: pacs, to: W, match: {PatientID: 'X'}}, once_per: study}").needs_header
    assert not compiled(tmp_path, "- {forward: [pacs]}").needs_header


def test_rules_without_a_header_see_every_element_missing(issue_rules):
    decision = issue_rules.evaluate(facts(None, calling_ae="CT1"))
    assert decision.matched == (REST,)


def test_a_rule_set_is_immutable_and_shared_by_threads(issue_rules):
    with pytest.raises(dataclasses.FrozenInstanceError):
        issue_rules.rules = ()  # type: ignore[misc]
    cases = [(facts(chest_ct()), (CHEST, REST)), (facts(header(Modality="MR")), (PRIORS, REST)),
             (facts(header(), sop_class=SC, calling_ae="CTLAB"), (DROP,))] * 200
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda case: issue_rules.evaluate(case[0]).matched, cases))
    assert results == [expected for _, expected in cases]


def test_evaluate_is_ruleset_compile_then_evaluate(tmp_path):
    rules = load(tmp_path, ISSUE_EXAMPLE).rules
    instance = facts(chest_ct())
    assert evaluate(rules, instance) == RuleSet.compile(rules).evaluate(instance)
    assert evaluate((), instance) == Decision()


def test_read_header_stops_before_the_pixel_data(tmp_path: Path):
    dataset = chest_ct()
    dataset.SOPClassUID, dataset.SOPInstanceUID = CT, "1.2.3"
    dataset.Rows = dataset.Columns = 64
    dataset.BitsAllocated, dataset.SamplesPerPixel, dataset.PixelRepresentation = 8, 1, 0
    dataset.PixelData = bytes(64 * 64)
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = tmp_path / "ct.dcm"
    dataset.save_as(path, enforce_file_format=True)
    read = read_header(path)
    assert "PixelData" not in read and read.Modality == "CT" and read.Rows == 64


def test_explanations_name_only_the_operators_that_failed_and_missing_elements(tmp_path):
    rules = compiled(tmp_path, """
        - {name: a, when: {StudyDescription: {regex: CT, not: {regex: HEAD}}}, forward: [pacs]}
        - {name: b, when: {Modality: {not: CT}}, forward: [pacs]}
        - {name: c, when: {InstitutionName: {exists: false}, peer_ip: 10.0.0.0/8}, forward: [pacs]}
    """)
    decision = rules.evaluate(facts(header(StudyDescription="HEAD CT", InstitutionName="X"), peer="192.168.1.2"),
                              explain=True)
    assert decision.explanation == (
        "rule 'a' failed: StudyDescription: 'HEAD CT' matches regex 'HEAD', which the rule excludes",
        "rule 'b' failed: Modality is missing",
        "rule 'c' failed: InstitutionName: 'X' exists; peer_ip: '192.168.1.2' is not in 10.0.0.0/8",
    )
