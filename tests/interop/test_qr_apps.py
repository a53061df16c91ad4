"""The Query/Retrieve apps as real processes over loopback: our qrscp, and findscu, getscu and
movescu (ours, then DCMTK's) against it.

Each test starts `python -m router.net qrscp -c <generated ini>` on a free port over a copy of
the library of tests/net/test_qr_index.py (three patients, four studies, nine small instances in
Implicit, Explicit and Deflated Explicit VR Little Endian) plus pydicom's JPEG Baseline file,
passed through. pynetdicom's apps are run against it too. Results are counted and checked; retrieved instances must carry the original's
data set bit for bit (their file meta is the receiver's own), except a deflated file fetched by
C-GET, which goes as its decoded data set in the syntax the requestor accepted.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from router.net import AE, evt
from router.net.sop_class import PatientRootQueryRetrieveInformationModelFind
from router.net.status import CANCEL, PENDING
from tests.conftest import CLIENT_TIMEOUT, LOOPBACK, Peer, our_app, peer_environment, pick_free_port, pynetdicom_app
from tests.conftest import wait_until
from tests.interop import store_data
from tests.net.test_qr_index import LIBRARY, Spec, write_instance, write_library

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
OUR_STORE = "OURSTORE"  # the move destination movescu --store plays
CANCEL_WAIT = 10.0  # seconds a C-FIND handler waits for the peer's C-CANCEL
DCMTK_STORE = "DCMTKSTORE"  # DCMTK's movescu or storescp as move destination
STUDY_1, STUDY_2, STUDY_3 = LIBRARY[0].study_uid, LIBRARY[3].study_uid, LIBRARY[5].study_uid
P1_INSTANCES = [spec for spec in LIBRARY if spec.patient == "P1"]
DEFLATED_UID = LIBRARY[6].sop_uid


@dataclass
class Archive:
    """A running qrscp over a folder holding copies of the `originals`."""

    peer: Peer
    folder: Path
    originals: dict[str, Path]  # by SOP Instance UID
    destinations: dict[str, int]  # move destination AE title -> its port
    jpeg: store_data.Instance

    @property
    def port(self) -> int:
        return self.peer.port


def write_config(path: Path, folder: Path, destinations: dict[str, int], settings: dict[str, object] | None = None) -> Path:
    """qrscp's ini over `folder`, knowing `destinations` (title -> port on loopback); `settings` add to [DEFAULT]."""
    lines = [
        "[DEFAULT]",
        "ae_title: QRSCP",
        f"bind_address: {LOOPBACK}",
        f"instance_location: {folder.name}",
        "database_location: index.sqlite",
        "acse_timeout: 10",
        "dimse_timeout: 20",
        "network_timeout: 20",
        *(f"{key}: {value}" for key, value in (settings or {}).items()),
    ]
    for title, port in destinations.items():
        lines += [f"[{title}]", f"address: {LOOPBACK}", f"port: {port}"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def start_archive(peers, tmp_path):
    """`start_archive(destinations)`: a running qrscp that knows OUR_STORE and `destinations`."""

    def start(destinations: dict[str, int] | None = None) -> Archive:
        originals_folder = tmp_path / "originals"
        originals = dict(write_library(originals_folder))
        jpeg = store_data.jpeg_instance(originals_folder)
        originals[jpeg.sop_instance_uid] = jpeg.path
        folder = tmp_path / "archive"
        shutil.copytree(originals_folder, folder)
        known = {OUR_STORE: pick_free_port(), **(destinations or {})}
        config = write_config(tmp_path / "qrscp.ini", folder, known)
        peer = peers.start("qrscp", lambda port: our_app("qrscp", "-c", str(config), "--port", str(port), "-v"))
        return Archive(peer, folder, originals, known, jpeg)

    return start


@pytest.fixture
def archive(start_archive) -> Archive:
    return start_archive()


def app(archive: Archive, name: str, *args: str) -> list[str]:
    return our_app(name, LOOPBACK, str(archive.port), "-aec", "QRSCP", *args)


def keys(*pairs: str) -> list[str]:
    return [item for pair in pairs for item in ("-k", pair)]


def responses(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(path) for path in sorted(folder.glob("rsp*.dcm"))]


def text(element: pydicom.DataElement) -> str:
    """An element's value as DICOM writes it: values joined by backslashes."""
    return "\\".join(map(str, element.value)) if element.VM > 1 else str(element.value)


def assert_same_data(received: Path, original: Path) -> None:
    assert store_data.data_digest(received) == store_data.data_digest(original), f"{received.name} differs"


def assert_retrieved(folder: Path, archive: Archive, uids: list[str]) -> None:
    """`folder` holds exactly the instances `uids`, each as `<uid>.dcm` with the original data set."""
    assert sorted(path.name for path in folder.iterdir()) == sorted(f"{uid}.dcm" for uid in uids)
    for uid in uids:
        assert_same_data(folder / f"{uid}.dcm", archive.originals[uid])


# ---- findscu ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model, query, expected",
    [
        ("-P", ["QueryRetrieveLevel=PATIENT", "PatientID=", "NumberOfPatientRelatedInstances="],
         {"P1": "5", "P2": "2", "P3": "2", "ID1": "1"}),
        ("-S", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID=", "PatientID=", "StudyDate=20200101-20211231"],
         {STUDY_1: "P1", STUDY_2: "P1"}),
        ("-S", ["QueryRetrieveLevel=SERIES", "SeriesInstanceUID=", "Modality=", f"StudyInstanceUID={STUDY_3}"],
         {LIBRARY[5].series_uid: "MR", LIBRARY[6].series_uid: "OT"}),
        ("-P", ["QueryRetrieveLevel=IMAGE", "SOPInstanceUID=", "InstanceNumber=", "PatientID=P1",
                f"StudyInstanceUID={STUDY_1}", f"SeriesInstanceUID={LIBRARY[0].series_uid}"],
         {LIBRARY[0].sop_uid: "1", LIBRARY[1].sop_uid: "2"}),
        ("-O", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID=", "ModalitiesInStudy=", "PatientID=P2"],
         {STUDY_3: "MR\\OT"}),
    ],
)
def test_findscu_at_each_level(archive, client, tmp_path, model, query, expected):
    """`query`: the level, the key the expected matches are keyed by, the key they map to, then more."""
    result = client(app(archive, "findscu", model, "-w", *keys(*query)), cwd=tmp_path)
    assert result.returncode == 0, result.output
    found = responses(tmp_path)
    assert result.output.count("Find Response") == len(found) == len(expected), result.output
    level, by, value = (key.partition("=")[0::2] for key in query[:3])
    assert {text(ds[by[0]]): text(ds[value[0]]) for ds in found} == expected
    assert all(ds.RetrieveAETitle == "QRSCP" and ds.QueryRetrieveLevel == level[1] for ds in found)


def test_findscu_wildcards_and_person_names_ignore_case(archive, client, tmp_path):
    result = client(app(archive, "findscu", "-S", "-w", *keys("QueryRetrieveLevel=STUDY", "PatientName=doe^j*", "StudyInstanceUID=")), cwd=tmp_path)
    assert result.returncode == 0, result.output
    assert sorted(str(ds.StudyInstanceUID) for ds in responses(tmp_path)) == sorted({STUDY_1, STUDY_2, STUDY_3})


def test_findscu_reads_a_query_file(archive, client, tmp_path):
    query = pydicom.Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.AccessionNumber = "ACC4"
    query.StudyInstanceUID = ""
    query_file = tmp_path / "query.dcm"
    query.save_as(query_file, implicit_vr=True, little_endian=True)
    result = client(app(archive, "findscu", "-S", "-f", str(query_file), "-k", "PatientName="))
    assert result.returncode == 0, result.output
    assert result.output.count("Find Response") == 1 and "Smith^Anna" in result.output


def test_findscu_an_identifier_the_model_refuses(archive, client):
    result = client(app(archive, "findscu", "-P", *keys("QueryRetrieveLevel=STUDY", "StudyDate=")))
    assert result.returncode == 1
    assert "Find failed: 0xA900" in result.output, result.output
    assert "PatientID needs a value" in result.output, result.output  # the SCP's reason, as its Error Comment
    assert archive.peer.wait_for_output("PatientID needs a value"), archive.peer.output()


def test_findscu_a_bad_key_is_one_line_and_exit_code_2(archive, client):
    result = client(app(archive, "findscu", *keys("QueryRetrieveLevel=STUDY", "NoSuchKeyword=1")))
    assert result.returncode == 2
    assert result.output.strip().splitlines() == ["E: -k 'NoSuchKeyword=1': unknown keyword 'NoSuchKeyword'"]


def test_the_scus_fail_when_the_peer_is_unreachable(client):
    port = str(pick_free_port())
    for name in ("findscu", "getscu", "movescu"):
        result = client(our_app(name, LOOPBACK, port, *keys("QueryRetrieveLevel=PATIENT", "PatientID=P1")))
        assert result.returncode == 1, (name, result.output)
        assert "unable to connect" in result.output, result.output


# ---- getscu -------------------------------------------------------------------------------------
def test_getscu_retrieves_a_study_bit_for_bit(archive, client, tmp_path):
    out = tmp_path / "got"
    result = client(app(archive, "getscu", "-S", "-od", str(out), *keys("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={STUDY_1}")))
    assert result.returncode == 0, result.output
    assert_retrieved(out, archive, [spec.sop_uid for spec in LIBRARY[:3]])


def test_getscu_passes_a_jpeg_instance_through_when_asked_for_its_syntax(archive, client, tmp_path):
    study = ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={pydicom.dcmread(archive.jpeg.path).StudyInstanceUID}"]
    refused = client(app(archive, "getscu", "-S", "-od", str(tmp_path / "refused"), *keys(*study)))
    assert refused.returncode == 1 and "0xA702" in refused.output, refused.output
    out = tmp_path / "got"
    result = client(app(archive, "getscu", "-S", "-od", str(out), "-ts", JPEG_BASELINE, *keys(*study)))
    assert result.returncode == 0, result.output
    assert_retrieved(out, archive, [archive.jpeg.sop_instance_uid])


def test_getscu_gets_a_deflated_instance_as_its_data_set(archive, client, tmp_path):
    out = tmp_path / "got"
    result = client(app(archive, "getscu", "-P", "-od", str(out), *keys("QueryRetrieveLevel=PATIENT", "PatientID=P2")))
    assert result.returncode == 0, result.output
    assert_same_data(out / f"{LIBRARY[5].sop_uid}.dcm", archive.originals[LIBRARY[5].sop_uid])
    received = pydicom.dcmread(out / f"{DEFLATED_UID}.dcm")
    original = pydicom.dcmread(archive.originals[DEFLATED_UID])
    assert received.file_meta.TransferSyntaxUID != original.file_meta.TransferSyntaxUID
    assert received.PixelData == original.PixelData and received.PatientName == original.PatientName


def test_getscu_refused_identifier(archive, client, tmp_path):
    result = client(app(archive, "getscu", "-S", "-od", str(tmp_path), *keys("QueryRetrieveLevel=SERIES", "SeriesInstanceUID=1.2.3")))
    assert result.returncode == 1
    assert "0xA900" in result.output and "StudyInstanceUID needs a value" in result.output, result.output


# ---- movescu ------------------------------------------------------------------------------------
def test_movescu_to_its_own_storage_scp(archive, client, tmp_path):
    out = tmp_path / "moved"
    store = ["--store", "--store-port", str(archive.destinations[OUR_STORE]), "--store-aet", OUR_STORE, "-aem", OUR_STORE]
    result = client(app(archive, "movescu", "-P", "-od", str(out), *store, *keys("QueryRetrieveLevel=PATIENT", "PatientID=P1")))
    assert result.returncode == 0, result.output
    assert_retrieved(out, archive, [spec.sop_uid for spec in P1_INSTANCES])


def test_movescu_passes_jpeg_through(archive, client, tmp_path):
    out = tmp_path / "moved"
    store = ["--store", "--store-port", str(archive.destinations[OUR_STORE]), "--store-aet", OUR_STORE, "-aem", OUR_STORE]
    study = pydicom.dcmread(archive.jpeg.path).StudyInstanceUID
    result = client(app(archive, "movescu", "-S", "-od", str(out), *store, *keys("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}")))
    assert result.returncode == 0, result.output
    assert_retrieved(out, archive, [archive.jpeg.sop_instance_uid])


def test_movescu_unknown_destination(archive, client):
    result = client(app(archive, "movescu", "-S", "-aem", "NOBODY", *keys("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={STUDY_1}")))
    assert result.returncode == 1
    assert "0xA801" in result.output, result.output


# ---- storing into qrscp --------------------------------------------------------------------------
def test_stored_instances_are_kept_bit_for_bit_and_found(archive, client, tmp_path):
    spec = Spec("P7", "Newcomer^Nina", 7, "20240101", 1, "CT", 1)
    sent = write_instance(spec, tmp_path / "new.dcm")
    stored = client(our_app("storescu", LOOPBACK, str(archive.port), "-aec", "QRSCP", str(sent)))
    assert stored.returncode == 0, stored.output
    assert_same_data(archive.folder / f"{spec.sop_uid}.dcm", sent)
    result = client(app(archive, "findscu", "-P", *keys("QueryRetrieveLevel=STUDY", "PatientID=P7", "StudyInstanceUID=", "PatientName=")))
    assert result.returncode == 0, result.output
    assert result.output.count("Find Response") == 1 and spec.study_uid in result.output and "Newcomer^Nina" in result.output


def test_a_restarted_qrscp_keeps_its_index(archive, peers, client, tmp_path):
    archive.peer.stop()
    (archive.folder / "P3" / "CT1-2").unlink()
    config = tmp_path / "qrscp.ini"
    again = peers.start("qrscp-again", lambda port: our_app("qrscp", "-c", str(config), "--port", str(port), "-v"))
    assert again.wait_for_output("9 unchanged, 0 skipped, 1 removed"), again.output()
    query = keys("QueryRetrieveLevel=PATIENT", "PatientID=P3", "NumberOfPatientRelatedInstances=")
    result = client(our_app("findscu", LOOPBACK, str(again.port), "-P", "-w", *query), cwd=tmp_path)
    assert result.returncode == 0, result.output
    assert [ds.NumberOfPatientRelatedInstances for ds in responses(tmp_path)] == [1]


def run_clean(config: Path, answer: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        our_app("qrscp", "-c", str(config), "--clean"), input=answer, capture_output=True, text=True,
        timeout=CLIENT_TIMEOUT, cwd=config.parent, env=peer_environment(),
    )


def test_qrscp_clean_deletes_the_indexed_instances_once_confirmed(archive, tmp_path):
    archive.peer.stop()
    kept = archive.folder / "notes.txt"  # not an instance: never indexed, never deleted
    kept.write_text("not DICOM")
    config = tmp_path / "qrscp.ini"
    instances = sorted(path for path in archive.folder.rglob("*") if path.is_file() and path != kept)

    refused = run_clean(config, "no\n")
    assert refused.returncode == 1 and "Nothing deleted" in refused.stderr, refused.stderr
    assert all(path.exists() for path in instances)

    cleaned = run_clean(config, "yes\n")
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"This deletes the {len(instances)} instances indexed in" in cleaned.stdout
    assert [path for path in archive.folder.rglob("*") if path.is_file()] == [kept]
    with sqlite3.connect(tmp_path / "index.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM instances").fetchone() == (0,)


def test_qrscp_reports_a_bad_configuration_in_one_line(client, tmp_path):
    config = tmp_path / "bad.ini"
    config.write_text("[DEFAULT]\nport: eleven\n[STORESCP]\naddress: 127.0.0.1\n")
    result = client(our_app("qrscp", "-c", str(config)))
    assert result.returncode == 2
    assert result.output.strip() == f"E: {config}: [DEFAULT] port: 'eleven' is not an integer"


# ---- DCMTK's SCUs against our qrscp --------------------------------------------------------------
def dcmtk(tool: str) -> str:
    """DCMTK's `tool`: the first on PATH outside our venv, whose bin holds pynetdicom's apps of the same names."""
    ours = Path(sys.executable).parent.resolve()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / tool
        if folder and candidate.is_file() and os.access(candidate, os.X_OK) and candidate.parent.resolve() != ours:
            return str(candidate)
    pytest.skip(f"DCMTK's {tool} is not installed")


def only_file(folder: Path, uid: str) -> Path:
    found = [path for path in folder.iterdir() if path.name.endswith(uid)]
    assert len(found) == 1, sorted(path.name for path in folder.iterdir())
    return found[0]


@pytest.mark.dcmtk
def test_dcmtk_findscu(archive, client, tmp_path):
    command = [dcmtk("findscu"), "-S", "-X", "-od", str(tmp_path), *keys("QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName=Doe*")]
    result = client([*command, LOOPBACK, str(archive.port)])
    assert result.returncode == 0, result.output
    assert sorted(str(ds.StudyInstanceUID) for ds in responses(tmp_path)) == sorted({STUDY_1, STUDY_2, STUDY_3})


@pytest.mark.dcmtk
def test_dcmtk_findscu_cancel_ends_our_c_find(our_server, client, tmp_path):
    """DCMTK's findscu sends C-CANCEL after the first match: the C-FIND handler sees it and the
    final response is Cancel. (In process, not the qrscp app: its handler waits for the cancel,
    so the test does not depend on which of the peer's C-CANCEL and the last match goes first.)"""
    seen_cancel = []

    def find(event: evt.Event):
        match = pydicom.Dataset()
        match.QueryRetrieveLevel, match.PatientID = "PATIENT", "P1"
        yield PENDING, match
        seen_cancel.append(wait_until(lambda: event.is_cancelled, CANCEL_WAIT))
        yield (CANCEL, None) if event.is_cancelled else (PENDING, match)

    ae = AE("OURQR")
    ae.add_supported_context(PatientRootQueryRetrieveInformationModelFind)
    ae.acse_timeout = ae.dimse_timeout = 30
    server = our_server.start(ae, evt_handlers=[(evt.EVT_C_FIND, find)])
    command = [dcmtk("findscu"), "-v", "-P", "--cancel", "1", "-aec", "OURQR", *keys("QueryRetrieveLevel=PATIENT", "PatientID")]

    result = client([*command, LOOPBACK, str(server.server_address[1])])

    assert result.returncode == 0, result.output
    assert seen_cancel == [True]
    assert "Cancel: MatchingTerminatedDueToCancelRequest" in result.output, result.output
    assert result.output.count("Find Response: ") == 1, result.output  # the one match, then the final


@pytest.mark.dcmtk
def test_dcmtk_getscu(archive, client, tmp_path):
    out = tmp_path / "got"
    out.mkdir()
    command = [dcmtk("getscu"), "-S", "-od", str(out), *keys("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={STUDY_1}")]
    result = client([*command, LOOPBACK, str(archive.port)])
    assert result.returncode == 0, result.output
    assert len(list(out.iterdir())) == 3
    for spec in LIBRARY[:3]:
        received = pydicom.dcmread(only_file(out, spec.sop_uid))
        assert received.PixelData == pydicom.dcmread(archive.originals[spec.sop_uid]).PixelData
        if received.file_meta.TransferSyntaxUID == spec.syntax:  # the one syntax a context was accepted in
            assert_same_data(only_file(out, spec.sop_uid), archive.originals[spec.sop_uid])


@pytest.mark.dcmtk
def test_dcmtk_movescu_with_its_own_storage_scp(start_archive, client, tmp_path):
    port = pick_free_port()
    archive = start_archive({DCMTK_STORE: port})
    out = tmp_path / "moved"
    out.mkdir()
    command = [dcmtk("movescu"), "-S", "-aem", DCMTK_STORE, "--port", str(port), "-od", str(out),
               *keys("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={STUDY_2}")]
    result = client([*command, LOOPBACK, str(archive.port)])
    assert result.returncode == 0, result.output
    assert len(list(out.iterdir())) == 2
    for spec in LIBRARY[3:5]:
        assert_same_data(only_file(out, spec.sop_uid), archive.originals[spec.sop_uid])


@pytest.mark.dcmtk
def test_our_movescu_to_a_dcmtk_storescp(start_archive, peers, client, tmp_path):
    out = tmp_path / "dcmtk"
    out.mkdir()
    storescp = dcmtk("storescp")
    destination = peers.start("dcmtk-storescp", lambda port: [storescp, "+B", "+xa", "-aet", DCMTK_STORE, "-od", str(out), str(port)])
    archive = start_archive({DCMTK_STORE: destination.port})
    study = pydicom.dcmread(archive.jpeg.path).StudyInstanceUID
    for uid in (STUDY_1, study):
        result = client(app(archive, "movescu", "-S", "-aem", DCMTK_STORE, *keys("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={uid}")))
        assert result.returncode == 0, result.output
    for uid in [spec.sop_uid for spec in LIBRARY[:3]] + [archive.jpeg.sop_instance_uid]:
        assert_same_data(only_file(out, uid), archive.originals[uid])


# ---- pynetdicom's SCUs against our qrscp -------------------------------------------------------------
@pytest.mark.pynetdicom
def test_pynetdicom_findscu(archive, client, tmp_path):
    command = pynetdicom_app("findscu", LOOPBACK, str(archive.port), "-S", "-w",
                             *keys("QueryRetrieveLevel=STUDY", "StudyInstanceUID=", "PatientName=Doe*"))
    result = client(command, cwd=tmp_path)
    assert result.returncode == 0, result.output
    assert sorted(str(ds.StudyInstanceUID) for ds in responses(tmp_path)) == sorted({STUDY_1, STUDY_2, STUDY_3})


@pytest.mark.pynetdicom
def test_pynetdicom_getscu(archive, client, tmp_path):
    out = tmp_path / "got"
    command = pynetdicom_app("getscu", LOOPBACK, str(archive.port), "-S", "-od", str(out),
                             *keys("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={STUDY_1}"))
    result = client(command)
    assert result.returncode == 0 and "Completed: 3, Failed: 0" in result.output, result.output
    for spec in LIBRARY[:3]:  # pynetdicom decodes and writes each instance again: compare the pixels
        received = pydicom.dcmread(only_file(out, spec.sop_uid))
        assert received.PixelData == pydicom.dcmread(archive.originals[spec.sop_uid]).PixelData


@pytest.mark.pynetdicom
def test_pynetdicom_movescu_with_its_own_storage_scp(archive, client, tmp_path):
    port, out = str(archive.destinations[OUR_STORE]), tmp_path / "moved"
    command = pynetdicom_app("movescu", LOOPBACK, str(archive.port), "-S", "-aem", OUR_STORE, "--store", "--store-port", port,
                             "-od", str(out), *keys("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={STUDY_2}"))
    result = client(command)
    assert result.returncode == 0 and "Completed: 2, Failed: 0" in result.output, result.output
    assert len(list(out.iterdir())) == 2
    for spec in LIBRARY[3:5]:
        only_file(out, spec.sop_uid)
