"""Checking a rules file: every problem at once, each at its line and column, with a hint.

Line numbers in these tests count from the first line of the rules snippet
(support.problems subtracts the destinations written above it); columns are
those of the file.
"""

from __future__ import annotations

import pytest

from rules.conditions import AllOf, KeyTest
from rules.decision import Morph, MorphKind
from rules.matchers import Exists, InRange, IsOneOf, Regex
from rules.prefetch import OncePer
from rules.ranges import Kind
from tests.rules.support import load, problems

pytestmark = pytest.mark.timeout(30)


def test_the_issue_example_reads_as_written(tmp_path):
    rules = load(tmp_path, """
        - name: chest CT to the AI node and the PACS
          when:
            Modality: CT                         # equality (case-sensitive, trailing spaces ignored)
            BodyPartExamined: [CHEST, THORAX]    # any of
            StudyDescription: {regex: '(?i)lung|chest'}
            calling_ae: {glob: 'CT*'}            # association facts: calling_ae, called_ae, peer_ip (CIDR ok)
            (0008,0080): {exists: true}          # tags by keyword or (gggg,eeee), private tags included
          forward: [ai, pacs]
          morph:                                 # applied to the copy sent by this rule only
            - set: {InstitutionName: Main Hospital}
            - delete: [OtherPatientIDs]
            - replace: {AccessionNumber: {regex: '^ACC', with: 'MH'}}
        - name: drop secondary captures from the CT lab
          when: {sop_class: SecondaryCaptureImageStorage, calling_ae: CTLAB}
          drop: true
          stop: true
        - name: prefetch priors for new MR studies
          when: {Modality: MR}
          once_per: study                        # fire once per StudyInstanceUID
          prefetch:
            from: pacs                           # a destination that is a Q/R SCP
            to: workstation                      # AE title the PACS knows as a move destination
            match: {PatientID: '{PatientID}'}    # templated from the received instance
            studies: 3                           # the 3 most recent other studies of the patient
        - name: everything else to the PACS
          forward: [pacs]
    """).rules
    chest, drop, prefetch, rest = rules
    assert [test.subject.text for test in chest.when.conditions] == [
        "Modality", "BodyPartExamined", "StudyDescription", "calling_ae", "(0008,0080)"]
    assert chest.when.conditions[1].test == IsOneOf(("CHEST", "THORAX"))
    assert chest.when.conditions[2].test == Regex("(?i)lung|chest")
    assert chest.when.conditions[4].test == Exists(True) and chest.when.conditions[4].subject.path.tag == 0x00080080
    assert chest.forward == ("ai", "pacs")
    assert chest.morphs == (
        Morph(MorphKind.SET, "InstitutionName", "Main Hospital"),
        Morph(MorphKind.DELETE, "OtherPatientIDs"),
        Morph(MorphKind.REPLACE, "AccessionNumber", "MH", pattern="^ACC"),
    )
    assert (drop.drop, drop.stop, drop.forward) == (True, True, ())
    assert drop.when.conditions[0].test == IsOneOf(("1.2.840.10008.5.1.4.1.1.7",))
    spec = prefetch.prefetch
    assert (spec.source, spec.move_destination, spec.studies, spec.once_per) == ("pacs", "workstation", 3, OncePer.STUDY)
    assert [(key, template.text) for key, template in spec.match] == [("PatientID", "{PatientID}")]
    assert rest.when == AllOf(()) and rest.forward == ("pacs",)
    assert [rule.position.line for rule in rules] == [6, 18, 22, 30]  # the file's lines (5 lines come first)


def test_ranges_are_parsed_once_as_the_elements_kind(tmp_path):
    (rule,) = load(tmp_path, """
        - when: {StudyDate: {between: [2024-01-01, 20241231]}, SliceThickness: {gt: 2}, StudyTime: {le: '08:30'}}
          forward: [pacs]
    """).rules
    dates, numbers, times = (test.test for test in rule.when.conditions)
    assert dates == InRange(Kind.DATE, __import__("datetime").date(2024, 1, 1), True,
                            __import__("datetime").date(2024, 12, 31), True)
    assert numbers == InRange(Kind.NUMBER, 2.0, False, None, True)
    assert times.kind is Kind.TIME and times.high.hour == 8 and times.high.minute == 30


def test_unknown_keywords_and_operators_name_the_closest(tmp_path):
    assert problems(tmp_path, """
        - name: r
          when:
            Modalty: CT
            calling_aet: X
            StudyDescription: {regx: 'a'}
            Modality: {bteween: [1, 2]}
            RequestAttributesSequence[*].ScheduledProcedureStepId: X
            modality: CT
          forward: [pacs]
    """) == [
        "3:5 unknown DICOM keyword 'Modalty' (did you mean 'Modality'?)",
        "4:5 'calling_aet' is not a DICOM keyword, a tag (gggg,eeee) or a sequence path (did you mean 'calling_ae'?)",
        "5:24 unknown key 'regx' in the test of StudyDescription (did you mean 'regex'?)",
        "6:16 unknown key 'bteween' in the test of Modality (did you mean 'between'?)",
        "7:5 unknown DICOM keyword 'ScheduledProcedureStepId' (did you mean 'ScheduledProcedureStepID'?)",
        "8:5 unknown DICOM keyword 'modality' (did you mean 'Modality'?)",
    ]


def test_bad_regexes_globs_and_values(tmp_path):
    assert problems(tmp_path, """
        - name: r
          when:
            StudyDescription: {regex: '(unclosed'}
            StationName: {glob: 'CT[12'}
            Modality: ''
            BodyPartExamined:
            InstitutionName: [A, [B]]
            (0008,0080): {exists: maybe}
            PatientID: {}
          forward: [pacs]
    """) == [
        "3:31 bad regex '(unclosed': missing ), unterminated subpattern at position 0",
        "4:25 bad glob 'CT[12': a '[' is never closed (write [[] for a literal '[')",
        "5:15 an empty value never matches Modality (use {exists: false} for a missing element)",
        "6:22 BodyPartExamined needs a value to compare with (use {exists: false} for a missing element)",
        "7:26 each value InstitutionName is compared with must be a single value",
        "8:27 exists must be true or false",
        "9:16 the test of PatientID names no operator (one of regex, glob, exists, not, gt, ge, lt, le, between)",
    ]


def test_bad_ranges(tmp_path):
    assert problems(tmp_path, """
        - name: r
          when:
            StudyDate: {gt: yesterday}
            StudyTime: {lt: '25:00'}
            SliceThickness: {between: [3, 1]}
            SeriesNumber: {between: [1]}
            PatientName: {gt: A}
            calling_ae: {lt: B}
            Rows: {gt: 1, ge: 2}
            Columns: {gt: 5, lt: 5}
            AcquisitionDateTime: {ge: 2024-13-01}
          forward: [pacs]
    """) == [
        "3:21 'yesterday' is not a date (DA) such as 20240131 or 2024-01-31",
        "4:21 '25:00' is not a time (TM) such as 083000, 0830 or 08:30",
        "5:31 SliceThickness can never be >= 3 and <= 1 (no value lies between these bounds)",
        "6:29 between needs two values: [low, high]",
        "7:23 'gt' compares dates, times and numbers; PatientName is PN (ranges apply to DA, TM, DT, IS, DS and the "
        "binary number VRs)",
        "8:22 'lt' compares dates, times and numbers; calling_ae is text (ranges apply to DA, TM, DT, IS, DS and the "
        "binary number VRs)",
        "9:11 conflicting bounds for Rows: gt, ge (give 'between: [low, high]', or at most one of gt/ge and one of "
        "lt/le)",
        "10:14 Columns can never be > 5 and < 5 (no value lies between these bounds)",
        "11:31 '2024-13-01' is not a date-time (DT) such as 20240131083000 or 2024-01-31T08:30",
    ]


def test_bad_facts_paths_and_blocks(tmp_path):
    assert problems(tmp_path, """
        - name: r
          when:
            peer_ip: 10.0.0.0/33
            sop_class: SecondaryCaptureImageStorag
            transfer_syntax: JPEGBaseline
            RequestAttributesSequence: X
            Modality.PatientID: X
            (0040,0275)[0]: {exists: true}
            any: []
            not: [Modality]
            all: [{Modalty: CT}]
          forward: [pacs]
    """) == [
        "3:14 peer_ip: '10.0.0.0/33' does not appear to be an IPv4 or IPv6 network (an address such as 10.1.2.3 or "
        "a network such as 10.0.0.0/8)",
        "4:16 unknown sop_class 'SecondaryCaptureImageStorag' (did you mean 'SecondaryCaptureImageStorage'?)",
        "5:22 unknown transfer_syntax 'JPEGBaseline' (did you mean 'JPEGBaseline8Bit'?)",
        "6:32 RequestAttributesSequence is a sequence: only 'exists' applies to it (name an element inside it, e.g. "
        "RequestAttributesSequence[*].Keyword)",
        "7:5 'Modality' in 'Modality.PatientID' is not a sequence (only a sequence (VR SQ) can be followed by '.')",
        "8:5 '(0040,0275)[0]' ends with an item index (name an element inside the item, e.g. Sequence[0].Keyword)",
        "9:10 'any' needs a list of conditions (e.g. any: [{Modality: CT}, {Modality: MR}])",
        "10:10 not must be a mapping of conditions (e.g. {Modality: CT})",
        "11:12 unknown DICOM keyword 'Modalty' (did you mean 'Modality'?)",
    ]


def test_unknown_destinations_and_conflicting_actions(tmp_path):
    assert problems(tmp_path, """
        - name: a
          forward: [pacs, pacz, pacs]
        - name: b
          drop: true
          forward: [pacs]
        - name: c
          when: {Modality: CT}
          morph: [{set: {InstitutionName: X}}]
        - name: d
          once_per: study
          forward: [pacs]
        - name: e
          once_per: visit
          prefetch: {from: pacs, to: WS, match: {PatientID: '{PatientID}'}}
        - name: idle
          when: {Modality: CT}
    """) == [
        "2:19 rule 'a' forwards to unknown destination 'pacz' (did you mean 'pacs'?)",
        "2:25 rule 'a' forwards to 'pacs' twice",
        "3:3 rule 'b' both drops and forwards",
        "8:10 rule 'c' morphs but forwards nothing (morphs change only the copies a rule forwards)",
        "10:13 rule 'd' has once_per but no prefetch (once_per applies to prefetch)",
        "13:13 once_per must be one of study, series, patient",
        "15:3 rule 'idle' does nothing (give it 'forward: [destination]' or 'drop: true')",
    ]


def test_rules_after_one_that_matches_everything_and_stops_can_never_match(tmp_path):
    assert problems(tmp_path, """
        - name: drop all
          drop: true
          stop: true
        - name: too late
          when: {Modality: CT}
          forward: [pacs]
        - name: also too late
          forward: [ai]
    """) == [
        "4:3 rule 'too late' can never match: rule 'drop all' (line 6) matches every instance and stops "
        "(move this rule above it, or give that rule conditions)",
        "7:3 rule 'also too late' can never match: rule 'drop all' (line 6) matches every instance and stops "
        "(move this rule above it, or give that rule conditions)",
    ]


def test_a_stop_with_conditions_hides_nothing_and_duplicate_names_are_reported(tmp_path):
    assert problems(tmp_path, """
        - name: ct
          when: {Modality: CT}
          forward: [pacs]
          stop: true
        - name: ct
          forward: [ai]
    """) == ["5:3 two rules are named 'ct' (the first is at line 6; names tell rules apart in logs and decisions)"]


def test_bad_morphs(tmp_path):
    assert problems(tmp_path, """
        - name: r
          forward: [pacs]
          morph:
            - set: {Rows: abc, InstitutionNam: X, PixelData: x, ReferencedImageSequence: x}
            - delete: [OtherPatientID]
            - replace: {AccessionNumber: {regex: '^A(CC', with: 'MH'}}
            - replace: {AccessionNumber: {regex: '^ACC', with: '\\2'}}
            - replace: {AccessionNumber: {regex: '^ACC'}}
            - copy: {from: PatientID}
            - copy: {from: PatientID, to: PatientNam}
            - rename: {A: B}
            - {set: {A: B}, delete: [C]}
            - set: [InstitutionName]
    """) == [
        "4:19 cannot set Rows (US) to 'abc': invalid literal for int() with base 10: 'abc'",
        "4:24 unknown DICOM keyword 'InstitutionNam' (did you mean 'InstitutionName'?)",
        "4:54 cannot set PixelData (OB) to 'x': OB elements cannot be written from text",
        "4:57 ReferencedImageSequence is a sequence: morphs change single elements (delete it, or morph another "
        "element)",
        "5:16 unknown DICOM keyword 'OtherPatientID' (did you mean 'OtherPatientIDs'?)",
        "6:42 bad regex or replacement '^A(CC' -> 'MH': missing ), unterminated subpattern at position 2",
        "7:42 bad regex or replacement '^ACC' -> '\\2': invalid group reference 2 at position 1",
        "8:34 replace AccessionNumber needs regex and with (e.g. {regex: '^ACC', with: 'MH'})",
        "9:13 copy needs to (e.g. copy: {from: PatientID, to: OtherPatientIDs})",
        "10:35 unknown DICOM keyword 'PatientNam' (did you mean 'PatientName'?)",
        "11:7 unknown key 'rename' in a morph (did you mean 'replace'?)",
        "12:7 each morph does one thing (write one '- set: ...' entry per change)",
        "12:14 unknown DICOM keyword 'A' (write a keyword of the DICOM dictionary or a tag as (gggg,eeee))",
        "12:30 unknown DICOM keyword 'C' (write a keyword of the DICOM dictionary or a tag as (gggg,eeee))",
        "13:12 set must be a mapping of elements (e.g. set: {InstitutionName: ...})",
    ]


def test_bad_prefetches(tmp_path):
    assert problems(tmp_path, """
        - name: a
          prefetch: {from: archive, to: WS, match: {PatientID: '{PatientID}'}}
        - name: b
          prefetch: {from: pacz, to: 'A TITLE FAR TOO LONG', match: {PatientId: '{PatientID}'}, studies: 0}
        - name: c
          prefetch: {from: pacs, to: WS, match: {PatientID: '{PatientIDD}', StudyDate: '{StudyDate!r}'}}
        - name: d
          prefetch: {from: pacs, match: {}}
        - name: e
          prefetch: {from: pacs, to: WS, match: {}}
        - name: f
          prefetch: {from: pacs, to: WS, match: {PatientID: 'x{PatientID'}}
    """) == [
        "2:20 prefetch.from 'archive' is a folder, not a DICOM node (name a DICOM destination that answers C-FIND "
        "and C-MOVE)",
        "4:20 prefetch from unknown destination 'pacz' (did you mean 'pacs'?)",
        "4:30 prefetch.to: Invalid AE title 'A TITLE FAR TOO LONG': 20 characters, at most 16 (the AE title the Q/R "
        "node moves to)",
        "4:62 prefetch.match: unknown DICOM keyword 'PatientId' (did you mean 'PatientID'?)",
        "4:98 prefetch.studies must be a whole number >= 1",
        "6:53 unknown DICOM keyword 'PatientIDD' (did you mean 'PatientID'?)",
        "6:80 prefetch.match: bad template '{StudyDate!r}': a field is just a keyword in braces, like {PatientID}",
        "8:13 prefetch needs to (e.g. {from: pacs, to: WORKSTATION, match: {PatientID: '{PatientID}'}, studies: 3})",
        "10:41 prefetch.match needs at least one C-FIND key (e.g. {PatientID: '{PatientID}'})",
        "12:53 prefetch.match: bad template 'x{PatientID': expected '}' before end of string",
    ]


def test_conditions_read_into_tests(tmp_path):
    (rule,) = load(tmp_path, "- {when: {'(0009,1001)': [A, B]}, forward: [pacs]}").rules
    (test,) = rule.when.conditions
    assert isinstance(test, KeyTest) and test.subject.path.tag == 0x00091001 and test.subject.path.vr == ""
    assert test.test == IsOneOf(("A", "B"))
