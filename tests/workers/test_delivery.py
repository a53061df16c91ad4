"""DICOM delivery: contexts proposed, associations reused and renewed, syntax conversion, morphed copies, outcomes.

The destination is our engine's Storage SCP in this process on a loopback
port, configured per test (which SOP classes and syntaxes it takes, what
status it answers), so each outcome comes from a real association.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pydicom
import pytest

from router.config import Address, DicomDestination
from router.net import AE, evt
from router.net.presentation import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN
from router.net.status import OUT_OF_RESOURCES, SUCCESS
from rules.decision import Morph, MorphKind
from tests.conftest import LOOPBACK, pick_free_port
from tests.interop import store_data
from tests.workers.harness import instances
from workers.attempt import DELIVERED, Need, OutcomeKind, Parcel
from workers.delivery import IDLE_RELEASE, DicomSender, RecentNeeds, proposals, status_outcome

CT = store_data.CT_IMAGE_STORAGE
MR = store_data.MR_IMAGE_STORAGE
DEFLATED = str(store_data.SYNTAXES["deflated"])
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
MORPHS = (
    Morph(MorphKind.SET, "InstitutionName", "Main Hospital"),
    Morph(MorphKind.DELETE, "PatientName"),
    Morph(MorphKind.REPLACE, "AccessionNumber", "MH", pattern="^ACC"),
)


class Destination:
    """Our Storage SCP: the contexts it takes, the status it answers; what it got, on how many associations."""

    def __init__(self, our_server, contexts: dict[str, list[str] | None], status: int = SUCCESS, **server_options) -> None:
        self.status = status
        self.datasets: list[pydicom.Dataset] = []
        self.syntaxes: list[str] = []
        self.associations = 0
        self.lock = threading.Lock()
        ae = AE("DEST")
        for sop_class, syntaxes in contexts.items():
            ae.add_supported_context(sop_class, syntaxes)
        for option, value in server_options.items():
            setattr(ae, option, value)
        handlers = [(evt.EVT_C_STORE, self._store), (evt.EVT_ESTABLISHED, self._established)]
        self.server = our_server.start(ae, evt_handlers=handlers)
        self.port = self.server.server_address[1]

    def _established(self, event) -> None:
        with self.lock:
            self.associations += 1

    def _store(self, event) -> int:
        with self.lock:
            self.datasets.append(event.dataset)
            self.syntaxes.append(str(event.context.transfer_syntax[0]))
        return self.status


def sender_to(port: int, ae_title: str = "DEST") -> DicomSender:
    ae = AE("ROUTER")
    ae.acse_timeout = ae.dimse_timeout = ae.connection_timeout = 5
    destination = DicomDestination("pacs", Address(LOOPBACK, port), ae_title, max_associations=1)
    return DicomSender(destination, ae, RecentNeeds(), max_pdu=0)


@pytest.fixture
def sent():
    sender_list: list[DicomSender] = []
    yield sender_list
    for sender in sender_list:
        sender.close()


def parcel_of(instance: store_data.Instance) -> Parcel:
    return Parcel(instance.path, instance.sop_class_uid, instance.sop_instance_uid, instance.transfer_syntax)


# ---- pure parts ----------------------------------------------------------------------------------
def test_proposals_put_the_own_syntax_alone_first():
    explicit = proposals(Need(CT, EXPLICIT_VR_LITTLE_ENDIAN))
    assert [c.transfer_syntax for c in explicit] == [[EXPLICIT_VR_LITTLE_ENDIAN], [IMPLICIT_VR_LITTLE_ENDIAN]]
    deflated = proposals(Need(CT, DEFLATED))
    assert [c.transfer_syntax for c in deflated] == [[DEFLATED], [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN]]
    assert [c.transfer_syntax for c in proposals(Need(CT, JPEG_BASELINE))] == [[JPEG_BASELINE]]  # never re-encoded
    assert [c.transfer_syntax for c in proposals(Need(CT, "1.2.3.4"))] == [["1.2.3.4"]]  # unknown: as it is


def test_recent_needs_fill_an_association_up_to_128_contexts():
    recent = RecentNeeds()
    for index in range(100):
        recent.contexts_for(Need(f"1.2.3.{index}", EXPLICIT_VR_LITTLE_ENDIAN))
    contexts, covered = recent.contexts_for(Need(CT, JPEG_BASELINE))
    assert contexts[0].abstract_syntax == CT and len(contexts) == 127  # 1 + 63 needs of 2 contexts
    assert len(covered) == 64 and Need(CT, JPEG_BASELINE) in covered
    assert Need("1.2.3.99", EXPLICIT_VR_LITTLE_ENDIAN) in covered  # the most recent come first


@pytest.mark.parametrize(
    "status, kind",
    [
        (0x0000, OutcomeKind.DELIVERED),
        (0xB000, OutcomeKind.DELIVERED),  # warning: coercion of data elements
        (0xB007, OutcomeKind.DELIVERED),
        (0xA700, OutcomeKind.TRANSIENT),  # out of resources
        (0xA7FF, OutcomeKind.TRANSIENT),
        (0x0213, OutcomeKind.TRANSIENT),  # resource limitation
        (0x0110, OutcomeKind.TRANSIENT),  # processing failure
        (0xFE00, OutcomeKind.TRANSIENT),  # cancel
        (0xA900, OutcomeKind.PERMANENT),  # data set does not match SOP class
        (0xC000, OutcomeKind.PERMANENT),  # cannot understand
        (0xC211, OutcomeKind.PERMANENT),
        (0x0122, OutcomeKind.PERMANENT),  # SOP class not supported
        (0x0124, OutcomeKind.PERMANENT),  # not authorized
    ],
)
def test_status_outcomes(status, kind):
    outcome = status_outcome(status, "disk full" if status == 0xA700 else "")
    assert outcome.kind is kind
    if kind is not OutcomeKind.DELIVERED:
        assert f"0x{status:04X}" in outcome.reason
    if status == 0xA700:
        assert outcome.reason == "0xA700 - Refused: out of resources (disk full)"


# ---- against a real association ------------------------------------------------------------------------
def test_associations_are_reused_and_renewed_for_a_new_sop_class(our_server, sent, tmp_path):
    destination = Destination(our_server, {CT: None, MR: None})
    ct = instances(tmp_path / "ct", 3)
    mr = instances(tmp_path / "mr", 1, kind=store_data.TYPICAL)
    sender = sender_to(destination.port)
    sent.append(sender)
    for instance in ct:
        assert sender.send(parcel_of(instance)) == DELIVERED
    assert destination.associations == 1
    assert sender.send(parcel_of(mr[0])) == DELIVERED  # CT's association never proposed MR
    assert destination.associations == 2
    assert sender.send(parcel_of(ct[0])) == DELIVERED  # the new one proposed CT too
    assert destination.associations == 2
    assert destination.syntaxes == [EXPLICIT_VR_LITTLE_ENDIAN] * 5


def test_an_idle_association_is_released(our_server, sent, tmp_path):
    destination = Destination(our_server, {CT: None})
    (instance,) = instances(tmp_path / "ct", 1)
    sender = sender_to(destination.port)
    sent.append(sender)
    assert sender.send(parcel_of(instance)) == DELIVERED
    deadline = sender.idle_deadline()
    assert deadline is not None and deadline <= time.monotonic() + IDLE_RELEASE
    sender.release_if_idle(time.monotonic())
    assert sender.current is not None  # not idle long enough yet
    assoc = sender.current.assoc
    sender.release_if_idle(deadline)
    assert sender.current is None and sender.idle_deadline() is None and assoc.is_released


def test_a_closed_association_is_replaced_without_a_failure(our_server, sent, tmp_path):
    destination = Destination(our_server, {CT: None})
    first, second = instances(tmp_path / "ct", 2)
    sender = sender_to(destination.port)
    sent.append(sender)
    assert sender.send(parcel_of(first)) == DELIVERED
    for assoc in destination.server.active_associations:
        assoc.abort()  # the destination drops the idle association
    time.sleep(0.2)
    assert sender.send(parcel_of(second)) == DELIVERED
    assert destination.associations == 2


def test_an_uncompressed_data_set_is_re_encoded_for_the_syntax_taken(our_server, sent, tmp_path):
    destination = Destination(our_server, {CT: [IMPLICIT_VR_LITTLE_ENDIAN]})
    (instance,) = instances(tmp_path / "ct", 1, "explicit")
    sender = sender_to(destination.port)
    sent.append(sender)
    assert sender.send(parcel_of(instance)) == DELIVERED
    assert destination.syntaxes == [IMPLICIT_VR_LITTLE_ENDIAN]
    original = pydicom.dcmread(instance.path)
    received = destination.datasets[0]
    assert received.SOPInstanceUID == original.SOPInstanceUID
    assert received.PixelData == original.PixelData and received.PatientName == original.PatientName


def test_a_compressed_instance_the_destination_cannot_take_as_it_is_fails_permanently(our_server, sent, tmp_path):
    jpeg = store_data.jpeg_instance(tmp_path)
    destination = Destination(our_server, {jpeg.sop_class_uid: [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN]})
    sender = sender_to(destination.port)
    sent.append(sender)
    outcome = sender.send(parcel_of(jpeg))
    assert outcome.kind is OutcomeKind.PERMANENT and "refuses" in outcome.reason and "JPEG Baseline" in outcome.reason
    assert destination.datasets == []


def test_a_sop_class_the_destination_refuses_fails_permanently(our_server, sent, tmp_path):
    destination = Destination(our_server, {MR: None})
    (instance,) = instances(tmp_path / "ct", 1)
    sender = sender_to(destination.port)
    sent.append(sender)
    outcome = sender.send(parcel_of(instance))
    assert outcome.kind is OutcomeKind.PERMANENT and not outcome.destination_down
    assert outcome.reason.startswith("the destination refuses CT Image Storage"), outcome.reason


@pytest.mark.parametrize("status, kind", [(OUT_OF_RESOURCES, OutcomeKind.TRANSIENT), (0xC000, OutcomeKind.PERMANENT)])
def test_a_failure_status_is_an_outcome(our_server, sent, tmp_path, status, kind):
    destination = Destination(our_server, {CT: None}, status=status)
    (instance,) = instances(tmp_path / "ct", 1)
    sender = sender_to(destination.port)
    sent.append(sender)
    outcome = sender.send(parcel_of(instance))
    assert outcome.kind is kind and not outcome.destination_down


def test_no_destination_is_transient_and_marks_it_down(tmp_path, sent):
    (instance,) = instances(tmp_path / "ct", 1)
    sender = sender_to(pick_free_port())
    sent.append(sender)
    outcome = sender.send(parcel_of(instance))
    assert outcome.kind is OutcomeKind.TRANSIENT and outcome.destination_down


def test_a_rejected_association_is_transient_with_the_reason(our_server, sent, tmp_path):
    destination = Destination(our_server, {CT: None}, require_called_aet=True)
    (instance,) = instances(tmp_path / "ct", 1)
    sender = sender_to(destination.port, ae_title="SOMEONE")
    sent.append(sender)
    outcome = sender.send(parcel_of(instance))
    assert outcome.kind is OutcomeKind.TRANSIENT and outcome.destination_down
    assert "called-AE-title-not-recognized" in outcome.reason


def test_a_spool_file_that_is_gone_fails_permanently(our_server, sent, tmp_path):
    destination = Destination(our_server, {CT: None})
    (instance,) = instances(tmp_path / "ct", 1)
    instance.path.unlink()
    sender = sender_to(destination.port)
    sent.append(sender)
    outcome = sender.send(parcel_of(instance))
    assert outcome.kind is OutcomeKind.PERMANENT and "gone" in outcome.reason


# ---- morphed copies ----------------------------------------------------------------------------------
def assert_morphed(received: pydicom.Dataset, original: pydicom.Dataset) -> None:
    assert received.InstitutionName == "Main Hospital" and "PatientName" not in received
    assert received.AccessionNumber == original.AccessionNumber.replace("ACC", "MH", 1)
    assert received.PixelData == original.PixelData and received.SOPInstanceUID == original.SOPInstanceUID


@pytest.mark.parametrize("syntax", ["implicit", "deflated"])
def test_a_copy_with_morphs_goes_morphed_in_its_own_syntax_and_the_spool_file_stays(our_server, sent, tmp_path, syntax):
    destination = Destination(our_server, {CT: None})
    (instance,) = instances(tmp_path / "ct", 1, syntax)
    before = instance.path.read_bytes()
    sender = sender_to(destination.port)
    sent.append(sender)
    assert sender.send(replace(parcel_of(instance), morphs=MORPHS)) == DELIVERED
    assert destination.syntaxes == [str(store_data.SYNTAXES[syntax])]
    assert_morphed(destination.datasets[0], pydicom.dcmread(instance.path))
    assert instance.path.read_bytes() == before


def test_a_compressed_copy_with_morphs_keeps_its_encapsulated_pixel_data(our_server, sent, tmp_path):
    jpeg = store_data.jpeg_instance(tmp_path)
    destination = Destination(our_server, {jpeg.sop_class_uid: [JPEG_BASELINE]})
    sender = sender_to(destination.port)
    sent.append(sender)
    assert sender.send(replace(parcel_of(jpeg), morphs=MORPHS[:2])) == DELIVERED
    assert destination.syntaxes == [JPEG_BASELINE]
    received, original = destination.datasets[0], pydicom.dcmread(jpeg.path)
    assert received.InstitutionName == "Main Hospital" and "PatientName" not in received
    assert received.PixelData == original.PixelData  # the JPEG fragments, byte for byte


def test_a_copy_with_morphs_is_re_encoded_for_the_syntax_taken(our_server, sent, tmp_path):
    destination = Destination(our_server, {CT: [IMPLICIT_VR_LITTLE_ENDIAN]})
    (instance,) = instances(tmp_path / "ct", 1, "explicit")
    sender = sender_to(destination.port)
    sent.append(sender)
    assert sender.send(replace(parcel_of(instance), morphs=MORPHS)) == DELIVERED
    assert destination.syntaxes == [IMPLICIT_VR_LITTLE_ENDIAN]
    assert_morphed(destination.datasets[0], pydicom.dcmread(instance.path))


def test_a_morph_that_cannot_be_applied_is_a_permanent_failure_with_its_reason(our_server, sent, tmp_path):
    destination = Destination(our_server, {CT: None})
    (instance,) = instances(tmp_path / "ct", 1)
    sender = sender_to(destination.port)
    sent.append(sender)
    bad = Morph(MorphKind.REPLACE, "Rows", "many", pattern=".+")  # text into a US element
    outcome = sender.send(replace(parcel_of(instance), morphs=(bad,)))
    assert outcome.kind is OutcomeKind.PERMANENT and outcome.reason.startswith("morph failed: replace Rows")
    assert destination.datasets == []
