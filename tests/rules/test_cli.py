"""`router test` (dry run, text and --json) and `router check` on rules, as a user runs them: subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from tests.rules.support import CT, SC, write
from tests.rules.test_evaluate import CHEST, DROP, ISSUE_EXAMPLE, PRIORS, REST

pytestmark = pytest.mark.timeout(60)
COMMAND_TIMEOUT = 30


def router(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "router", *arguments], capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT)


def instance(path: Path, sop_class: str, **elements: str) -> Path:
    dataset = Dataset()
    dataset.SOPClassUID, dataset.SOPInstanceUID = sop_class, f"1.2.3.{len(elements)}"
    for keyword, value in elements.items():
        setattr(dataset, keyword, value)
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.SourceApplicationEntityTitle = "CT1"
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def files(tmp_path) -> tuple[Path, Path]:
    rules = write(tmp_path, ISSUE_EXAMPLE)
    folder = tmp_path / "instances"
    instance(folder / "a_ct.dcm", CT, Modality="CT", BodyPartExamined="CHEST", StudyDescription="CT CHEST",
             InstitutionName="X", AccessionNumber="ACC1")
    instance(folder / "b_mr.dcm", "1.2.840.10008.5.1.4.1.1.4", Modality="MR", PatientID="P7", StudyInstanceUID="1.2.9")
    instance(folder / "c_sc.dcm", SC, Modality="OT")
    (folder / "notes.txt").write_text("not DICOM")
    return rules, folder


def test_router_test_prints_per_instance_what_matched_what_failed_and_the_actions(files):
    rules, folder = files
    result = router("test", str(rules), str(folder / "a_ct.dcm"), str(folder / "b_mr.dcm"))
    assert result.returncode == 0, result.stderr
    ct, mr = result.stdout.strip().split("\n\n")
    assert ct.splitlines() == [
        f"{folder / 'a_ct.dcm'}: {CT} from 'CT1' to 'ROUTER'",
        f"  rule '{CHEST}' matched",
        f"  rule '{DROP}' failed: sop_class: '{CT}', 'CTImageStorage' is not '{SC}'; calling_ae: 'CT1' is not 'CTLAB'",
        f"  rule '{PRIORS}' failed: Modality: 'CT' is not 'MR'",
        f"  rule '{REST}' matched",
        "  -> forward to ai with set InstitutionName = 'Main Hospital', delete OtherPatientIDs, replace /^ACC/ in "
        f"AccessionNumber with 'MH' (rule '{CHEST}')",
        "  -> forward to pacs with set InstitutionName = 'Main Hospital', delete OtherPatientIDs, replace /^ACC/ in "
        f"AccessionNumber with 'MH' (rule '{CHEST}')",
    ]
    assert f"  -> prefetch from pacs to workstation: 3 studies where PatientID='P7', once per 1.2.9 (rule '{PRIORS}')" \
        in mr.splitlines()
    assert f"  -> forward to pacs (rule '{REST}')" in mr.splitlines()


def test_router_test_json_walks_directories_and_takes_the_association_from_options(files):
    rules, folder = files
    result = router("test", str(rules), str(folder), "--calling-ae", "CTLAB", "--called-ae", "GATE", "--peer-ip",
                    "10.0.0.9", "--json")
    assert result.returncode == 1  # notes.txt is not DICOM
    runs = json.loads(result.stdout)
    assert [Path(run["file"]).name for run in runs] == ["a_ct.dcm", "b_mr.dcm", "c_sc.dcm", "notes.txt"]
    ct, mr, sc, notes = runs
    assert ct["facts"] == {"sop_class": CT, "sop_instance": "1.2.3.5", "transfer_syntax": ExplicitVRLittleEndian,
                           "calling_ae": "CTLAB", "called_ae": "GATE", "peer_ip": "10.0.0.9"}
    assert [rule["outcome"] for rule in ct["rules"]] == ["matched", "failed", "failed", "matched"]
    assert ct["rules"][1]["reasons"] == [f"sop_class: '{CT}', 'CTImageStorage' is not '{SC}'"]
    assert ct["destinations"] == ["ai", "pacs"]
    assert ct["decision"]["forwards"][0]["morphs"][0] == {"kind": "set", "tag": "InstitutionName",
                                                          "value": "Main Hospital", "source": "", "pattern": ""}
    assert mr["decision"]["prefetches"] == [{"rule": PRIORS, "source": "pacs", "move_destination": "workstation",
                                             "match": [["PatientID", "P7"]], "studies": 3, "once_key": "1.2.9"}]
    assert sc["decision"]["dropped"] is True and sc["destinations"] == []
    assert [rule["outcome"] for rule in sc["rules"]] == ["failed", "matched", "not reached", "not reached"]
    assert notes["error"].startswith("cannot read it as DICOM") and "force=True" not in notes["error"]


def test_router_test_shows_a_morph_that_would_fail_at_delivery(tmp_path):
    rules = write(tmp_path, """
        - {name: r, forward: [pacs], morph: [{replace: {SeriesNumber: {regex: '7', with: 'x'}}}]}
    """)
    path = instance(tmp_path / "ct.dcm", CT, SeriesNumber="7")
    result = router("test", str(rules), str(path))
    assert "  !! morphs for pacs would fail: replace SeriesNumber: invalid literal for int() with base 10: 'x'" \
        in result.stdout.splitlines()


def test_router_test_and_check_refuse_a_bad_rules_file_with_every_problem(tmp_path):
    rules = write(tmp_path, "- {name: r, when: {Modalty: CT, StudyDate: {gt: soon}}, forward: [pacz]}")
    for command in (["check", str(rules)], ["test", str(rules), str(tmp_path)]):
        result = router(*command)
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.splitlines() == [
            f"{rules}:6:20: unknown DICOM keyword 'Modalty' (did you mean 'Modality'?)",
            f"{rules}:6:49: 'soon' is not a date (DA) such as 20240131 or 2024-01-31",
            f"{rules}:6:67: rule 'r' forwards to unknown destination 'pacz' (did you mean 'pacs'?)",
            f"{rules}: 3 problem(s)",
        ]


def test_router_check_accepts_the_issue_example(tmp_path):
    result = router("check", str(write(tmp_path, ISSUE_EXAMPLE)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("OK (3 destination(s), 4 rule(s))")
