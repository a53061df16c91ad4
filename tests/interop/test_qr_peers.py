"""Our Query/Retrieve SCU side against third-party SCPs: DCMTK's dcmqrscp and pynetdicom's qrscp.

Each SCP runs once per module (tests/interop/qr_peers.py) over the library of
tests/net/test_qr_index.py (three patients, four studies, nine small
instances in Implicit, Explicit and Deflated Explicit VR Little Endian) plus a
series of `MANY` CTs of a fourth patient, and knows three move destinations
of ours: movescu's own storage SCP (`--store`), our storescp app, and an
in-process SCP that takes `SLOW_STORE` s per instance (so a C-CANCEL lands
mid-move).

Our findscu must get exactly the matches at each level of Patient Root and
Study Root; our getscu and movescu must deliver exactly the instances asked
for, each data set byte for byte as the original when it comes in the
original's syntax, else equal element for element. What each peer does its
own way is data (qr_peers.Quirks): the syntax it sends an instance in, and
pynetdicom's qrscp repeating a match once per instance under it. A C-CANCEL
after the first pending C-MOVE response must end the move early with 0xFE00
(both SCPs look for one between sub-operations), and the association must
go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pydicom
import pytest

from router.net.presentation import VERIFICATION_SOP_CLASS
from router.net.sop_class import StudyRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelMove
from router.net.status import CANCEL, PENDING, PENDING_WARNING, SUCCESS, StatusClass, classify
from tests.conftest import LOOPBACK, PeerStarter, ServerStarter, our_app, pick_free_port, wait_until
from tests.interop.qr_peers import DCMQRSCP, PYNETDICOM, STARTERS, Archive
from tests.interop.store_data import read_meta
from tests.interop.test_orthanc import MOVE_MESSAGE_ID, OUR_SCP, scu_ae, start_our_scp
from tests.interop.test_qr_apps import OUR_STORE, P1_INSTANCES, STUDY_1, STUDY_2, STUDY_3, assert_same_data, keys
from tests.interop.test_qr_apps import responses, text
from tests.interop.test_store_dcmtk import SavingHandler
from tests.net.test_qr_index import LIBRARY, Spec, write_instance, write_library

STORESCP = "STORESCP"  # our storescp app as move destination
MANY = 12  # instances in the series a C-MOVE is cancelled in
CANCEL_SERIES = tuple(Spec("P9", "Cancel^Carl", 9, "20230101", 1, "CT", number) for number in range(1, MANY + 1))
STUDY_4 = LIBRARY[7].study_uid
SLOW_STORE = 0.1  # seconds our SCP takes per instance of the cancelled C-MOVE: the C-CANCEL has 1.1 s to land
FIND_MESSAGE_ID = 7
SETTLE = 5.0  # seconds for our SCP to have handled the last C-STORE, once the C-MOVE's final response is in


@dataclass
class Site:
    """A third-party archive and our move destinations around it."""

    archive: Archive
    storescp_folder: Path  # where our storescp app (STORESCP) writes
    slow_scp: SavingHandler  # our in-process SCP (OUR_SCP), SLOW_STORE s per instance


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, Path]:
    """The library and the cancel series as Part 10 files, by SOP Instance UID."""
    folder = tmp_path_factory.mktemp("qr-originals")
    files = write_library(folder)
    (folder / "P9").mkdir()
    files.update({spec.sop_uid: write_instance(spec, folder / "P9" / f"CT1-{spec.instance}") for spec in CANCEL_SERIES})
    return files


@pytest.fixture(
    scope="module",
    params=[pytest.param(DCMQRSCP, marks=pytest.mark.dcmtk), pytest.param(PYNETDICOM, marks=pytest.mark.pynetdicom)],
)
def site(request, tmp_path_factory, originals) -> Iterator[Site]:
    """One archive per peer kind, read only, with our destinations running beside it."""
    folder = tmp_path_factory.mktemp(request.param)
    peers, servers = PeerStarter(folder), ServerStarter()
    try:
        storescp_folder = folder / "storescp"
        storescp = peers.start(
            STORESCP, lambda port: our_app("storescp", str(port), "-aet", STORESCP, "-ba", LOOPBACK, "-od", str(storescp_folder))
        )
        slow_port, slow_scp = start_our_scp(servers, folder / "slow", SLOW_STORE)
        destinations = {OUR_STORE: pick_free_port(), STORESCP: storescp.port, OUR_SCP: slow_port}
        archive = STARTERS[request.param](peers, folder, originals, destinations)
        yield Site(archive, storescp_folder, slow_scp)
    finally:
        servers.stop_all()
        peers.stop_all()


def our(archive: Archive, name: str, *args: str) -> list[str]:
    """Our app `name` calling the archive."""
    return our_app(name, LOOPBACK, str(archive.port), "-aec", archive.ae_title, *args)


def instances_under(archive: Archive, keyword: str, value: str) -> int:
    """How many of the archive's instances have `keyword` equal to `value`."""
    return sum(str(pydicom.dcmread(path, stop_before_pixels=True)[keyword].value) == value for path in archive.originals.values())


def assert_received(folder: Path, archive: Archive, uids: list[str], sent_as: Callable[[str], tuple[str, ...]]) -> None:
    """`folder` holds exactly `uids` as <uid>.dcm, each in a syntax `sent_as` allows for its original's, with its data."""
    assert sorted(path.name for path in folder.iterdir()) == sorted(f"{uid}.dcm" for uid in uids)
    for uid in uids:
        received, original = folder / f"{uid}.dcm", archive.originals[uid]
        syntax = read_meta(original).TransferSyntaxUID
        arrived = read_meta(received).TransferSyntaxUID
        assert arrived in sent_as(syntax), uid
        if arrived == syntax:
            assert_same_data(received, original)
        else:  # converted by the peer: another encoding of the same elements
            assert pydicom.dcmread(received) == pydicom.dcmread(original), uid


# ---- findscu ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model, query, expected",
    [
        pytest.param("-P", ["QueryRetrieveLevel=PATIENT", "PatientID=", "PatientName="],
                     {"P1": "Doe^John", "P2": "Doe^Jane", "P3": "Smith^Anna", "P9": "Cancel^Carl"}, id="patient-root-patient"),
        pytest.param("-P", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID=", "AccessionNumber=", "PatientID=P1"],
                     {STUDY_1: "ACC1", STUDY_2: "ACC2"}, id="patient-root-study"),
        pytest.param("-P", ["QueryRetrieveLevel=SERIES", "SeriesInstanceUID=", "Modality=", "PatientID=P2", f"StudyInstanceUID={STUDY_3}"],
                     {LIBRARY[5].series_uid: "MR", LIBRARY[6].series_uid: "OT"}, id="patient-root-series"),
        pytest.param("-P", ["QueryRetrieveLevel=IMAGE", "SOPInstanceUID=", "InstanceNumber=", "PatientID=P1",
                            f"StudyInstanceUID={STUDY_1}", f"SeriesInstanceUID={LIBRARY[0].series_uid}"],
                     {LIBRARY[0].sop_uid: "1", LIBRARY[1].sop_uid: "2"}, id="patient-root-image"),
        pytest.param("-S", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID=", "PatientID=", "PatientName=Doe*"],
                     {STUDY_1: "P1", STUDY_2: "P1", STUDY_3: "P2"}, id="study-root-study-wildcard"),
        pytest.param("-S", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID=", "StudyDate=20200101-20211231"],
                     {STUDY_1: "20200115", STUDY_2: "20210620"}, id="study-root-study-date-range"),
        pytest.param("-S", ["QueryRetrieveLevel=SERIES", "SeriesInstanceUID=", "SeriesNumber=", f"StudyInstanceUID={STUDY_1}"],
                     {LIBRARY[0].series_uid: "1", LIBRARY[2].series_uid: "2"}, id="study-root-series"),
        pytest.param("-S", ["QueryRetrieveLevel=IMAGE", "SOPInstanceUID=", "InstanceNumber=", f"StudyInstanceUID={STUDY_4}",
                            f"SeriesInstanceUID={LIBRARY[7].series_uid}"],
                     {LIBRARY[7].sop_uid: "1", LIBRARY[8].sop_uid: "2"}, id="study-root-image"),
    ],
)
def test_our_findscu(site, client, tmp_path, model, query, expected):
    """`query`: the level, the key the expected matches are keyed by, the key they map to, then more."""
    archive = site.archive
    result = client(our(archive, "findscu", model, "-w", *keys(*query)), cwd=tmp_path)
    assert result.returncode == 0, result.output + archive.peer.output()
    found = responses(tmp_path)
    (_, level), (by, _), (value, _) = (key.partition("=")[0::2] for key in query[:3])
    count = sum(instances_under(archive, by, match) for match in expected) if archive.quirks.one_match_per_instance else len(expected)
    assert result.output.count("Find Response") == len(found) == count, result.output
    assert {(text(ds[by]), text(ds[value])) for ds in found} == set(expected.items())
    assert all(ds.RetrieveAETitle == archive.ae_title and ds.QueryRetrieveLevel == level for ds in found)


# ---- getscu -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model, query, uids",
    [
        pytest.param("-S", ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={STUDY_1}"], [spec.sop_uid for spec in LIBRARY[:3]],
                     id="study-root-study"),
        pytest.param("-P", ["QueryRetrieveLevel=PATIENT", "PatientID=P2"], [spec.sop_uid for spec in LIBRARY[5:7]],
                     id="patient-root-patient"),
    ],
)
def test_our_getscu(site, client, tmp_path, model, query, uids):
    archive, out = site.archive, tmp_path / "got"
    result = client(our(archive, "getscu", model, "-od", str(out), *keys(*query)))
    assert result.returncode == 0, result.output + archive.peer.output()
    assert_received(out, archive, uids, archive.get_sent_as)


# ---- movescu ------------------------------------------------------------------------------------
def test_our_movescu_with_its_own_storage_scp(site, client, tmp_path):
    archive, out = site.archive, tmp_path / "moved"
    store = ["--store", "--store-port", str(archive.destinations[OUR_STORE]), "--store-aet", OUR_STORE, "-aem", OUR_STORE]
    result = client(our(archive, "movescu", "-P", "-od", str(out), *store, *keys("QueryRetrieveLevel=PATIENT", "PatientID=P1")))
    assert result.returncode == 0, result.output + archive.peer.output()
    assert_received(out, archive, [spec.sop_uid for spec in P1_INSTANCES], archive.move_sent_as)


def test_our_movescu_to_our_storescp(site, client):
    archive = site.archive
    result = client(our(archive, "movescu", "-S", "-aem", STORESCP, *keys("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={STUDY_3}")))
    assert result.returncode == 0, result.output + archive.peer.output()
    assert_received(site.storescp_folder, archive, [spec.sop_uid for spec in LIBRARY[5:7]], archive.move_sent_as)


def test_c_cancel_during_a_c_find_and_the_association_goes_on(site):
    """A C-CANCEL after the first match: the peer ends with Cancel (after fewer matches, or all of
    them when it reads the cancel only then), or with Success and every match if it never looked;
    either way the association serves the next request."""
    archive, model = site.archive, StudyRootQueryRetrieveInformationModelFind
    assoc = scu_ae(model, VERIFICATION_SOP_CLASS).associate(LOOPBACK, archive.port, ae_title=archive.ae_title)
    assert assoc.is_established, archive.peer.output()
    try:
        query = pydicom.Dataset()
        query.QueryRetrieveLevel, query.StudyInstanceUID = "IMAGE", CANCEL_SERIES[0].study_uid
        query.SeriesInstanceUID, query.SOPInstanceUID = CANCEL_SERIES[0].series_uid, ""
        found = []
        for status, identifier in assoc.send_c_find(query, model, msg_id=FIND_MESSAGE_ID):
            if not found:
                assoc.send_c_cancel(FIND_MESSAGE_ID, query_model=model)
            found.append((status.Status, identifier))
        echo = assoc.send_c_echo()
    finally:
        assoc.release()

    *matches, (final, _) = found
    assert all(code in (PENDING, PENDING_WARNING) and identifier is not None for code, identifier in matches), found
    uids = {str(identifier.SOPInstanceUID) for _, identifier in matches}
    assert uids <= {spec.sop_uid for spec in CANCEL_SERIES} and len(uids) == len(matches)
    # Cancel (dcmqrscp may send it even after the last match), or Success with every match.
    assert final == CANCEL or (final, len(matches)) == (SUCCESS, MANY), (hex(final), len(matches))
    assert echo.Status == SUCCESS and assoc.is_released


def test_c_cancel_ends_a_c_move_early_and_the_association_goes_on(site):
    archive, model = site.archive, StudyRootQueryRetrieveInformationModelMove
    assoc = scu_ae(model, VERIFICATION_SOP_CLASS).associate(LOOPBACK, archive.port, ae_title=archive.ae_title)
    assert assoc.is_established, archive.peer.output()
    try:
        moved = []
        query = pydicom.Dataset()
        query.QueryRetrieveLevel, query.StudyInstanceUID = "STUDY", CANCEL_SERIES[0].study_uid
        for response in assoc.send_c_move(query, OUR_SCP, model, msg_id=MOVE_MESSAGE_ID):
            if not moved:
                assoc.send_c_cancel(MOVE_MESSAGE_ID, query_model=model)
            moved.append(response)
        echo = assoc.send_c_echo()
    finally:
        assoc.release()

    statuses = [status.Status for status, _ in moved]
    assert all(classify(code) is StatusClass.PENDING for code in statuses[:-1]), [hex(code) for code in statuses]
    final = moved[-1][0]
    assert final.Status == CANCEL, [hex(code) for code in statuses]
    assert 0 < final.NumberOfCompletedSuboperations < MANY
    assert final.NumberOfCompletedSuboperations + final.NumberOfRemainingSuboperations == MANY
    assert echo.Status == SUCCESS and assoc.is_released
    completed = final.NumberOfCompletedSuboperations
    assert wait_until(lambda: len(site.slow_scp.calling_titles) == completed, SETTLE), site.slow_scp.calling_titles
    assert set(site.slow_scp.calling_titles) == {archive.ae_title}
