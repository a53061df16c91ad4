"""Prefetch attempts against our engine's Q/R SCP in this process: the studies chosen, moves, failures, resuming.

The archive answers a Study Root C-FIND with the studies it is given (one of
them twice, as an SCP that answers per instance does) and a C-MOVE by storing
the study's one data set at a storage SCP in this process, which refuses the
instances it is told to (so the move ends in 0xB000), or with 0xA801 for a
move destination it does not know. Each prefetch runs on a real association.
"""

from __future__ import annotations

import threading

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from router.config import Address, DicomDestination
from router.net import AE, evt, sop_class
from router.net.contexts import accept_all_storage
from router.net.status import OUT_OF_RESOURCES, PENDING, SUCCESS
from rules.decision import Prefetch
from tests.conftest import LOOPBACK, pick_free_port
from workers.attempt import OutcomeKind
from workers.jobs import JobKind, PrefetchOrder, PrefetchProgress
from workers.prefetch import Prefetcher, find_identifier, most_recent
from workers.queue import Job, JobState

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0
WORKSTATION = "WORKSTATION"
CURRENT = "1.2.3.100"  # the study of the instance that fired the prefetch
STUDIES = {  # StudyInstanceUID -> (StudyDate, StudyTime)
    CURRENT: ("20240301", "080000"),
    "1.2.3.1": ("20200101", "120000"),
    "1.2.3.2": ("20230615", "090000"),
    "1.2.3.3": ("20230615", "143000"),  # the same day, later
    "1.2.3.4": ("20191231", ""),
    "1.2.3.5": ("", ""),  # no date: the oldest
    "1.2.3.6": ("20220202", "101010.5"),
}
NEWEST_OTHERS = ("1.2.3.3", "1.2.3.2", "1.2.3.6")


def match(uid: str) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = uid
    identifier.StudyDate, identifier.StudyTime = STUDIES[uid]
    return identifier


def instance_of(study: str) -> Dataset:
    dataset = Dataset()
    dataset.SOPClassUID = sop_class.CTImageStorage
    dataset.SOPInstanceUID = generate_uid()
    dataset.StudyInstanceUID = study
    dataset.PatientID = "P1"
    return dataset


class Archive:
    """Our Q/R SCP (Study Root FIND and MOVE) and the storage SCP it moves to; what each was asked."""

    def __init__(self, our_server, refuse_studies: set[str] = frozenset()) -> None:
        self.finds: list[Dataset] = []
        self.moves: list[str] = []
        self.stored: list[str] = []
        self.refuse_studies = set(refuse_studies)
        self.lock = threading.Lock()
        store = AE(WORKSTATION)
        accept_all_storage(store)
        self.store_port = our_server.start(store, evt_handlers=[(evt.EVT_C_STORE, self._store)]).server_address[1]
        ae = AE("PACS")
        ae.dimse_timeout = ae.acse_timeout = WAIT
        ae.add_supported_context(sop_class.StudyRootQueryRetrieveInformationModelFind)
        ae.add_supported_context(sop_class.StudyRootQueryRetrieveInformationModelMove)
        handlers = [(evt.EVT_C_FIND, self._find), (evt.EVT_C_MOVE, self._move)]
        self.port = our_server.start(ae, evt_handlers=handlers).server_address[1]

    def _find(self, event):
        self.finds.append(event.identifier)
        for uid in [*STUDIES, "1.2.3.2"]:  # one study answered twice
            yield PENDING, match(uid)

    def _move(self, event):
        study = str(event.identifier.StudyInstanceUID)
        with self.lock:
            self.moves.append(study)
        if str(event.move_destination).strip() != WORKSTATION:
            yield None, None
            return
        yield LOOPBACK, self.store_port
        yield 2
        yield PENDING, instance_of(study)
        yield PENDING, instance_of(study)

    def _store(self, event) -> int:
        study = str(event.dataset.StudyInstanceUID)
        with self.lock:
            self.stored.append(study)
            refused = study in self.refuse_studies and self.stored.count(study) == 2  # the second of the study
        return OUT_OF_RESOURCES if refused else SUCCESS


def prefetcher(port: int) -> Prefetcher:
    ae = AE("ROUTER")
    ae.acse_timeout = ae.dimse_timeout = ae.connection_timeout = WAIT
    return Prefetcher(DicomDestination("pacs", Address(LOOPBACK, port), "PACS"), ae, max_pdu=0)


def order(studies: int = 3, move_destination: str = WORKSTATION, patient: str = "P1") -> PrefetchOrder:
    return PrefetchOrder(Prefetch("priors", "pacs", move_destination, (("PatientID", patient),), studies, CURRENT), CURRENT)


def job(prefetch_order: PrefetchOrder, progress: PrefetchProgress = PrefetchProgress()) -> Job:
    return Job(1, "x.dcm", "pacs", JobState.IN_FLIGHT, 0, 0.0, "", "1.9", sop_class.CTImageStorage,
               "1.2.840.10008.1.2.1", "CT1", 0.0, JobKind.PREFETCH, (), prefetch_order, progress)


# ---- pure parts ----------------------------------------------------------------------------------
def test_the_query_has_the_match_keys_and_the_study_keys():
    identifier = find_identifier(order())
    assert identifier.QueryRetrieveLevel == "STUDY" and identifier.PatientID == "P1"
    assert (identifier.StudyInstanceUID, identifier.StudyDate, identifier.StudyTime) == ("", "", "")


def test_the_most_recent_other_studies_each_once():
    found, chosen = most_recent([match(uid) for uid in [*STUDIES, "1.2.3.2"]], order())
    assert found == ["1.2.3.3", "1.2.3.2", "1.2.3.6", "1.2.3.1", "1.2.3.4", "1.2.3.5"]
    assert chosen == NEWEST_OTHERS
    assert most_recent([match(CURRENT)], order()) == ([], ())


# ---- against a real association --------------------------------------------------------------------
def test_a_prefetch_moves_the_three_most_recent_other_studies(our_server):
    archive = Archive(our_server)
    outcome = prefetcher(archive.port).send(job(order()))
    assert outcome.kind is OutcomeKind.DELIVERED, outcome
    assert outcome.progress == PrefetchProgress(NEWEST_OTHERS, NEWEST_OTHERS, found=6)
    assert archive.moves == list(NEWEST_OTHERS)
    assert sorted(archive.stored) == sorted(NEWEST_OTHERS * 2)
    (query,) = archive.finds
    assert query.PatientID == "P1"


def test_no_other_study_is_a_prefetch_with_nothing_to_move(our_server):
    archive = Archive(our_server)
    outcome = prefetcher(archive.port).send(job(order(studies=0)))
    assert outcome.kind is OutcomeKind.DELIVERED and outcome.progress.chosen == () and archive.moves == []


def test_a_partial_move_is_retried_for_the_failed_study_only(our_server):
    archive = Archive(our_server, refuse_studies={"1.2.3.2"})
    sender = prefetcher(archive.port)
    first = sender.send(job(order()))
    assert first.kind is OutcomeKind.TRANSIENT and not first.destination_down
    assert "1.2.3.2" in first.reason and "0xB000" in first.reason
    assert first.progress == PrefetchProgress(NEWEST_OTHERS, ("1.2.3.3", "1.2.3.6"), found=6)

    archive.refuse_studies.clear()
    second = sender.send(job(order(), first.progress))
    assert second.kind is OutcomeKind.DELIVERED
    assert second.progress.remaining == ()
    assert archive.moves == [*NEWEST_OTHERS, "1.2.3.2"]  # only the failed study again
    assert len(archive.finds) == 1  # the studies were chosen once


def test_an_unknown_move_destination_is_permanent(our_server):
    archive = Archive(our_server)
    outcome = prefetcher(archive.port).send(job(order(move_destination="NOBODY")))
    assert outcome.kind is OutcomeKind.PERMANENT and "0xA801" in outcome.reason
    assert outcome.progress.moved == ()


def test_an_empty_match_key_would_fetch_every_patient_and_is_refused(our_server):
    archive = Archive(our_server)
    outcome = prefetcher(archive.port).send(job(order(patient="")))
    assert outcome.kind is OutcomeKind.PERMANENT and "PatientID is empty" in outcome.reason
    assert archive.finds == []


def test_a_source_that_is_down_is_transient_and_holds_the_lane_back():
    outcome = prefetcher(pick_free_port()).send(job(order()))
    assert outcome.kind is OutcomeKind.TRANSIENT and outcome.destination_down
