"""Our engine against Orthanc 1.10 over loopback: echo, storage, query and retrieve.

Orthanc (tests/interop/orthanc.py) knows our SCU, titled ROUTERSCU, and,
where it must dial us, our SCP, titled ROUTERSCP. The echo and storage tests
start an Orthanc each; the query and retrieve tests share one per module,
which holds an archive they only read.

Storage: our `send_c_store` and our storescu app send a small CT (Implicit VR
Little Endian), a typical MR and a 4 MB multi-frame (Explicit VR Little
Endian) and pydicom's JPEG Baseline file, passed through; Orthanc's REST API
must then give back each file with its data set as we sent it, byte for byte.
A Deflated instance comes back equal element for element only: Orthanc
inflates it and deflates it again when it writes the file.

Query and retrieve run on an archive uploaded through the REST API (not our
C-STORE): two patients, three studies, four series. C-FIND at study and
series level in the Patient Root and Study Root models must return exactly
the matching studies and series; C-MOVE (to our in-process SCP and to our
storescp app) and C-GET must deliver exactly the instances asked for, each
data set byte for byte as archived. Orthanc's C-MOVE runs on DCMTK's
provider, which checks for a C-CANCEL before each sub-operation and then
answers 0xFE00: a cancel after the first pending response must end the move
early, and the association must go on. A move to a destination Orthanc does
not know is answered 0xC000 (unable to process), not 0xA801.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Iterator

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid

from router.net import AE, build_role, evt
from router.net.contexts import accept_all_storage
from router.net.presentation import VERIFICATION_SOP_CLASS
from router.net.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
from router.net.status import CANCEL, SUCCESS, UNABLE_TO_PROCESS, StatusClass, classify
from tests.conftest import LOOPBACK, PeerStarter, our_app, verification_ae, wait_until
from tests.interop import store_data
from tests.interop.orthanc import Modality, Orthanc, OrthancStarter
from tests.interop.store_data import Instance
from tests.interop.test_store_dcmtk import SavingHandler

pytestmark = pytest.mark.orthanc

OUR_SCU = "ROUTERSCU"
OUR_SCP = "ROUTERSCP"
ORTHANC = "ORTHANC"
MULTIFRAME_FRAMES = 8  # 8 x 0.5 MiB: a multi-frame of 4 MB
STORED_OK = "Received Store Response (Status: 0x0000 - Success)"
TRANSFER_TIMEOUT = 60.0
SETTLE = 5.0  # our SCP's last C-STORE handled, once the C-MOVE's final response is in
MANY = 12  # instances in the series a C-MOVE is cancelled in
MOVE_MESSAGE_ID = 41  # the cancelled C-MOVE's, named so the C-CANCEL can name it
SLOW_STORE = 0.05  # seconds our SCP takes per instance while a C-MOVE is cancelled: time for the cancel


# ---- what we send, what Orthanc holds --------------------------------------------------------
@pytest.fixture(scope="module")
def instances(tmp_path_factory) -> list[Instance]:
    """A small implicit CT, a typical explicit MR, a 4 MB explicit multi-frame, the JPEG file."""
    library = store_data.library(tmp_path_factory)
    folder = tmp_path_factory.mktemp("orthanc-multiframe")
    multiframe = store_data.write_instance(
        store_data.large_multiframe(frames=MULTIFRAME_FRAMES), ExplicitVRLittleEndian, folder / "multiframe.dcm", "multiframe"
    )
    return [
        *library.get("implicit", (store_data.SMALL,)),
        *library.get("explicit", (store_data.TYPICAL,)),
        multiframe,
        *library.get(store_data.JPEG),
    ]


@dataclass(frozen=True)
class Patient:
    patient_id: str
    name: str


ONE = Patient("ORTH-001", "ORTHANC^ONE")
TWO = Patient("ORTH-002", "ORTHANC^TWO")


@dataclass(frozen=True)
class Series:
    patient: Patient
    study_uid: str
    series_uid: str
    modality: str
    instances: tuple[Instance, ...]


@dataclass(frozen=True)
class Archive:
    """What Orthanc holds in the query/retrieve tests: patient > study > series > instances."""

    series: tuple[Series, ...]

    def studies_of(self, patient_id: str | None = None) -> set[str]:
        return {s.study_uid for s in self.series if patient_id in (None, s.patient.patient_id)}

    def series_of(self, study_uid: str) -> dict[str, str]:
        """Series Instance UID -> Modality of the study's series."""
        return {s.series_uid: s.modality for s in self.series if s.study_uid == study_uid}

    def study(self, study_uid: str) -> list[Series]:
        return [s for s in self.series if s.study_uid == study_uid]

    def instances(self, study_uid: str, series_uid: str | None = None) -> dict[str, Instance]:
        """SOP Instance UID -> instance, for a study or one of its series."""
        return {
            i.sop_instance_uid: i
            for s in self.study(study_uid)
            if series_uid in (None, s.series_uid)
            for i in s.instances
        }


def archived_series(folder: Path, patient: Patient, study_uid: str, modality: str, count: int) -> Series:
    """`count` instances of one new series (small CTs, or a typical MR), written Explicit VR Little Endian."""
    series_uid = generate_uid()
    written = []
    for number in range(1, count + 1):
        ds = store_data.typical_mr(seed=number) if modality == "MR" else store_data.small_ct(seed=number)
        ds.PatientID, ds.PatientName = patient.patient_id, patient.name
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = study_uid, series_uid, number
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        written.append(store_data.write_instance(ds, ExplicitVRLittleEndian, path, modality))
    return Series(patient, study_uid, series_uid, modality, tuple(written))


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Archive:
    """Patient one: study A (3 CT + 1 MR in two series), study B (1 CT); patient two: study C (MANY CT)."""
    folder = tmp_path_factory.mktemp("orthanc-archive")
    study_a, study_b, study_c = generate_uid(), generate_uid(), generate_uid()
    return Archive((
        archived_series(folder, ONE, study_a, "CT", 3),
        archived_series(folder, ONE, study_a, "MR", 1),
        archived_series(folder, ONE, study_b, "CT", 1),
        archived_series(folder, TWO, study_c, "CT", MANY),
    ))


@pytest.fixture(scope="module")
def archived(tmp_path_factory, archive: Archive) -> Iterator[Orthanc]:
    """One Orthanc for the query and retrieve tests, holding the archive (uploaded through REST), read only."""
    folder = tmp_path_factory.mktemp("orthanc-archived")
    peers = PeerStarter(folder)
    try:
        server = OrthancStarter(peers, folder).start([Modality(OUR_SCU)])
        for series in archive.series:
            for instance in series.instances:
                server.upload(instance.path)
        yield server
    finally:
        peers.stop_all()


def assert_holds_as_sent(orthanc: Orthanc, instance: Instance) -> None:
    """Orthanc holds the instance, its data set byte for byte as in our file."""
    instance_id = orthanc.instance_id(instance.sop_instance_uid)
    assert instance_id is not None, f"Orthanc has no {instance.sop_instance_uid}"
    _, stored = store_data.split_encoded(orthanc.instance_file(instance_id))
    assert stored == store_data.data_part(instance.path), f"Orthanc's copy of {instance.path.name} differs"


def assert_received_as_archived(directory: Path, expected: dict[str, Instance]) -> None:
    """`directory` holds exactly the expected instances (<SOP Instance UID>.dcm), data sets byte for byte."""
    assert sorted(path.name for path in directory.iterdir()) == sorted(f"{uid}.dcm" for uid in expected)
    for uid, instance in expected.items():
        received = directory / f"{uid}.dcm"
        assert store_data.data_digest(received) == store_data.data_digest(instance.path), f"{uid} differs"


# ---- our side --------------------------------------------------------------------------------
def scu_ae(*abstract_syntaxes: str) -> AE:
    ae = AE(OUR_SCU)
    ae.acse_timeout = ae.dimse_timeout = 30
    ae.connection_timeout = 5
    for uid in abstract_syntaxes:
        ae.add_requested_context(uid)
    return ae


def associate(ae: AE, orthanc: Orthanc, **kwargs):
    assoc = ae.associate(LOOPBACK, orthanc.port, ae_title=ORTHANC, **kwargs)
    assert assoc.is_established, orthanc.output()
    return assoc


def start_our_scp(our_server, directory: Path, delay: float = 0.0) -> tuple[int, SavingHandler]:
    """Our storage SCP titled ROUTERSCP (in process), saving <SOP Instance UID>.dcm into `directory`, `delay` s each."""
    directory.mkdir()
    ae = AE(OUR_SCP)
    ae.acse_timeout = ae.dimse_timeout = 30
    accept_all_storage(ae)
    ae.spool_directory = str(directory)
    handler = SavingHandler(directory)

    def store(event: evt.Event) -> int:
        time.sleep(delay)
        return handler(event)

    server = our_server.start(ae, evt_handlers=[(evt.EVT_C_STORE, store)])
    return server.server_address[1], handler


def assert_completed(responses: list[tuple[Dataset, Dataset | None]], count: int) -> None:
    """Pending responses, then a final Success reporting `count` sub-operations done, none failed."""
    statuses = [status.Status for status, _ in responses]
    assert all(classify(code) is StatusClass.PENDING for code in statuses[:-1]), [hex(c) for c in statuses]
    final = responses[-1][0]
    assert final.Status == SUCCESS, hex(final.Status)
    assert final.NumberOfCompletedSuboperations == count
    assert final.get("NumberOfFailedSuboperations", 0) == 0


# ---- C-ECHO ----------------------------------------------------------------------------------
def test_our_c_echo_to_orthanc(orthanc):
    server = orthanc.start([Modality(OUR_SCU)])
    assoc = associate(scu_ae(VERIFICATION_SOP_CLASS), server)
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()

    assert status.Status == SUCCESS
    assert assoc.is_released


def test_orthanc_c_echo_to_our_scp(orthanc, our_server):
    calls = []
    ae = verification_ae(OUR_SCP)
    server = our_server.start(ae, evt_handlers=[(evt.EVT_C_ECHO, lambda event: calls.append(event.assoc.requestor.ae_title) or SUCCESS)])
    peer = orthanc.start([Modality(OUR_SCP, server.server_address[1])])

    assert peer.echo(OUR_SCP), peer.output()
    assert calls == [ORTHANC]


def test_orthanc_rejects_a_wrong_called_ae_title(orthanc):
    server = orthanc.start([Modality(OUR_SCU)])

    assoc = scu_ae(VERIFICATION_SOP_CLASS).associate(LOOPBACK, server.port, ae_title="NOT-ORTHANC")

    assert assoc.is_rejected and not assoc.is_established


# ---- C-STORE into Orthanc ---------------------------------------------------------------------
def test_send_c_store_into_orthanc(orthanc, instances):
    server = orthanc.start([Modality(OUR_SCU)])
    ae = scu_ae()
    for instance in instances:
        ae.add_requested_context(instance.sop_class_uid, [instance.transfer_syntax])
    assoc = associate(ae, server)
    try:
        statuses = [assoc.send_c_store(instance.path).Status for instance in instances]
    finally:
        assoc.release()

    assert statuses == [SUCCESS] * len(instances)
    assert len(server.instance_ids()) == len(instances)
    for instance in instances:
        assert_holds_as_sent(server, instance)


def test_our_storescu_app_into_orthanc(orthanc, client, instances):
    server = orthanc.start([Modality(OUR_SCU)])

    result = client(
        our_app("storescu", LOOPBACK, str(server.port), *(str(i.path) for i in instances), "-v", "-cx",
                "-aet", OUR_SCU, "-aec", ORTHANC),
        timeout=TRANSFER_TIMEOUT,
    )

    assert result.returncode == 0, result.output
    assert result.output.count(STORED_OK) == len(instances), result.output
    for instance in instances:
        assert_holds_as_sent(server, instance)


def test_a_deflated_instance_comes_back_equal_but_deflated_anew(orthanc, tmp_path_factory):
    (instance,) = store_data.library(tmp_path_factory).get("deflated", (store_data.SMALL,))
    server = orthanc.start([Modality(OUR_SCU)])
    ae = scu_ae()
    ae.add_requested_context(instance.sop_class_uid, [DeflatedExplicitVRLittleEndian])
    assoc = associate(ae, server)
    try:
        status = assoc.send_c_store(instance.path)
    finally:
        assoc.release()

    assert status.Status == SUCCESS
    stored = pydicom.dcmread(BytesIO(server.instance_file(server.instance_id(instance.sop_instance_uid))))
    assert stored.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    assert stored == pydicom.dcmread(instance.path)


# ---- C-FIND out of Orthanc --------------------------------------------------------------------
def identifier(**keys: str) -> Dataset:
    """A query or retrieve identifier from keywords: `identifier(QueryRetrieveLevel="STUDY", ...)`."""
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def study_with_two_series(archive: Archive) -> str:
    (study_uid,) = {s.study_uid for s in archive.series if len(archive.series_of(s.study_uid)) > 1}
    return study_uid


def find(orthanc: Orthanc, model: str, **keys: str) -> list[tuple[Dataset, Dataset | None]]:
    """C-FIND `keys` in `model`: the responses, checked to be pending ones and then Success."""
    assoc = associate(scu_ae(model), orthanc)
    try:
        responses = list(assoc.send_c_find(identifier(**keys), model))
    finally:
        assoc.release()
    statuses = [status.Status for status, _ in responses]
    assert all(classify(code) is StatusClass.PENDING for code in statuses[:-1]), [hex(c) for c in statuses]
    assert statuses[-1] == SUCCESS and responses[-1][1] is None, [hex(c) for c in statuses]
    return responses


def matches(responses, keyword: str) -> list[str]:
    return [str(identifier.get(keyword)) for _, identifier in responses[:-1]]


@pytest.mark.parametrize(
    ("model", "keys"),
    [
        (PatientRootQueryRetrieveInformationModelFind, {"PatientID": ONE.patient_id}),  # its unique key
        (StudyRootQueryRetrieveInformationModelFind, {"PatientID": ONE.patient_id, "PatientName": ""}),
        (StudyRootQueryRetrieveInformationModelFind, {"PatientName": "ORTHANC^O*", "PatientID": ""}),
    ],
    ids=["patient-root-by-id", "study-root-by-id", "study-root-by-name"],
)
def test_c_find_studies_of_a_patient(archived, archive, model, keys):
    responses = find(archived, model, QueryRetrieveLevel="STUDY", StudyInstanceUID="", **keys)

    assert sorted(matches(responses, "StudyInstanceUID")) == sorted(archive.studies_of(ONE.patient_id))
    returned = {"PatientID": ONE.patient_id, "PatientName": ONE.name}
    for keyword in keys:
        assert set(matches(responses, keyword)) == {returned[keyword]}


def test_c_find_every_study(archived, archive):
    responses = find(archived, StudyRootQueryRetrieveInformationModelFind, QueryRetrieveLevel="STUDY", StudyInstanceUID="")

    assert sorted(matches(responses, "StudyInstanceUID")) == sorted(archive.studies_of())


@pytest.mark.parametrize(
    ("model", "keys"),
    [(PatientRootQueryRetrieveInformationModelFind, {"PatientID": ONE.patient_id}), (StudyRootQueryRetrieveInformationModelFind, {})],
    ids=["patient-root", "study-root"],
)
def test_c_find_series_of_a_study(archived, archive, model, keys):
    study_a = study_with_two_series(archive)

    responses = find(archived, model, QueryRetrieveLevel="SERIES", StudyInstanceUID=study_a, SeriesInstanceUID="", Modality="", **keys)

    found = dict(zip(matches(responses, "SeriesInstanceUID"), matches(responses, "Modality")))
    assert found == archive.series_of(study_a)
    assert len(responses) - 1 == len(found)


def test_c_find_without_a_match(archived):
    responses = find(archived, StudyRootQueryRetrieveInformationModelFind, QueryRetrieveLevel="STUDY", PatientID="NOBODY", StudyInstanceUID="")

    assert len(responses) == 1


# ---- C-MOVE out of Orthanc --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "keys"),
    [(StudyRootQueryRetrieveInformationModelMove, {}), (PatientRootQueryRetrieveInformationModelMove, {"PatientID": ONE.patient_id})],
    ids=["study-root", "patient-root"],
)
def test_c_move_a_study_to_our_scp(archived, our_server, archive, tmp_path, model, keys):
    out = tmp_path / "moved"
    port, handler = start_our_scp(our_server, out)
    archived.add_modality(Modality(OUR_SCP, port))
    study_uid = study_with_two_series(archive)
    expected = archive.instances(study_uid)

    assoc = associate(scu_ae(model), archived)
    try:
        query = identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID=study_uid, **keys)
        responses = list(assoc.send_c_move(query, OUR_SCP, model))
    finally:
        assoc.release()

    assert_completed(responses, len(expected))
    assert wait_until(lambda: len(handler.calling_titles) == len(expected), SETTLE)
    assert set(handler.calling_titles) == {ORTHANC}
    assert_received_as_archived(out, expected)


def test_c_move_a_series_to_our_storescp_app(archived, peers, archive, tmp_path):
    out = tmp_path / "moved"
    ours = peers.start("our-storescp", lambda port: our_app("storescp", str(port), "-v", "-ba", LOOPBACK, "-aet", OUR_SCP, "-od", str(out)))
    archived.add_modality(Modality(OUR_SCP, ours.port))
    series = next(s for s in archive.series if len(s.instances) > 1 and s.patient == ONE)
    expected = archive.instances(series.study_uid, series.series_uid)
    model = StudyRootQueryRetrieveInformationModelMove

    assoc = associate(scu_ae(model), archived)
    try:
        query = identifier(QueryRetrieveLevel="SERIES", StudyInstanceUID=series.study_uid, SeriesInstanceUID=series.series_uid)
        responses = list(assoc.send_c_move(query, OUR_SCP, model))
    finally:
        assoc.release()

    assert_completed(responses, len(expected))
    assert wait_until(lambda: sorted(p.name for p in out.iterdir()) == sorted(f"{uid}.dcm" for uid in expected), SETTLE), ours.output()
    assert_received_as_archived(out, expected)


def test_c_move_to_an_unknown_destination_fails(archived, archive):
    """Orthanc 1.10 answers 0xC000 (Failed: unable to process), where PS3.4 names 0xA801 (destination unknown)."""
    model = StudyRootQueryRetrieveInformationModelMove

    assoc = associate(scu_ae(model), archived)
    try:
        query = identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID=study_with_two_series(archive))
        responses = list(assoc.send_c_move(query, "NOBODY", model))
    finally:
        assoc.release()

    assert [status.Status for status, _ in responses] == [UNABLE_TO_PROCESS]


def test_c_cancel_ends_a_c_move_early_and_the_association_goes_on(archived, our_server, archive, tmp_path):
    out = tmp_path / "moved"
    port, handler = start_our_scp(our_server, out, SLOW_STORE)
    archived.add_modality(Modality(OUR_SCP, port))
    (study_c,) = archive.studies_of(TWO.patient_id)
    model = StudyRootQueryRetrieveInformationModelMove

    assoc = associate(scu_ae(model, VERIFICATION_SOP_CLASS), archived)
    try:
        responses = []
        query = identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID=study_c)
        for response in assoc.send_c_move(query, OUR_SCP, model, msg_id=MOVE_MESSAGE_ID):
            if not responses:
                assoc.send_c_cancel(MOVE_MESSAGE_ID, query_model=model)
            responses.append(response)
        echo = assoc.send_c_echo()
    finally:
        assoc.release()

    final = responses[-1][0]
    assert final.Status == CANCEL, [hex(status.Status) for status, _ in responses]
    assert final.NumberOfCompletedSuboperations < MANY
    assert final.NumberOfCompletedSuboperations + final.NumberOfRemainingSuboperations == MANY
    assert echo.Status == SUCCESS and assoc.is_released
    assert wait_until(lambda: len(handler.calling_titles) == final.NumberOfCompletedSuboperations, SETTLE)


# ---- C-GET out of Orthanc ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "keys"),
    [(StudyRootQueryRetrieveInformationModelGet, {}), (PatientRootQueryRetrieveInformationModelGet, {"PatientID": ONE.patient_id})],
    ids=["study-root", "patient-root"],
)
def test_c_get_a_study(archived, archive, tmp_path, model, keys):
    study_uid = study_with_two_series(archive)
    expected = archive.instances(study_uid)
    out = tmp_path / "got"
    out.mkdir()
    handler = SavingHandler(out)
    ae = scu_ae(model)
    ae.spool_directory = str(out)
    classes = sorted({instance.sop_class_uid for instance in expected.values()})
    for uid in classes:
        ae.add_requested_context(uid, [ExplicitVRLittleEndian])
    roles = [build_role(uid, scp_role=True) for uid in classes]

    assoc = associate(ae, archived, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, handler)])
    try:
        responses = list(assoc.send_c_get(identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID=study_uid, **keys), model))
    finally:
        assoc.release()

    assert_completed(responses, len(expected))
    assert len(handler.calling_titles) == len(expected)  # each one a C-STORE on our own association
    assert_received_as_archived(out, expected)
