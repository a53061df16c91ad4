"""A prefetch job: C-FIND the patient's other studies on a Q/R destination, C-MOVE the most recent ones.

`Prefetcher.send(job)` runs one attempt of a prefetch job on one association
with the job's source destination (Study Root FIND and MOVE):

1. Unless an earlier attempt did it, a C-FIND at STUDY level with the rule's
   match keys (templates already filled in) returning StudyInstanceUID,
   StudyDate and StudyTime. The study of the instance that fired the prefetch
   is left out, and the `studies` most recent others (by StudyDate and
   StudyTime; a study without a date counts as the oldest) are chosen.
2. A C-MOVE of each chosen study not moved yet to the rule's move destination
   (an AE title the source knows).

The outcome carries the progress (the chosen studies, those moved), which
the queue keeps in the job: a retry moves only the studies that failed, with
no new C-FIND. A study whose move ended in Success is moved; 0xB000 (some
sub-operations failed), out of resources, Cancel and "unable to process" are
worth a retry; an unknown move destination (0xA801) or a refused identifier
is not. The job succeeds when every chosen study has been moved; zero other
studies is a success too. A match key with an empty value is refused: it
would match every patient.
"""

from __future__ import annotations

from dataclasses import replace

from pydicom.dataset import Dataset

from router.config import DicomDestination
from router.net import AE, sop_class
from router.net.association import Association
from router.net.apps.common import QueryKeyError, set_query_key
from router.net.presentation import UNCOMPRESSED_LITTLE_ENDIAN, build_context, uid_name
from router.net.status import CANCEL, MOVE_DESTINATION_UNKNOWN, OUT_OF_RESOURCES, OUT_OF_RESOURCES_NUMBER_OF_MATCHES
from router.net.status import OUT_OF_RESOURCES_SUB_OPERATIONS, SUB_OPERATIONS_WITH_FAILURES, UNABLE_TO_PROCESS
from router.net.status import SUCCESS, Service, StatusClass, classify, describe
from workers.attempt import DELIVERED, HoldsNothingOpen, Outcome, OutcomeKind, permanent, transient
from workers.jobs import PrefetchOrder, PrefetchProgress
from workers.queue import Job

FIND_MODEL = sop_class.StudyRootQueryRetrieveInformationModelFind
MOVE_MODEL = sop_class.StudyRootQueryRetrieveInformationModelMove
SYNTAXES = UNCOMPRESSED_LITTLE_ENDIAN
STUDY_LEVEL = "STUDY"
RETURN_KEYS = ("StudyInstanceUID", "StudyDate", "StudyTime")
WORTH_A_RETRY = frozenset({
    SUB_OPERATIONS_WITH_FAILURES, OUT_OF_RESOURCES, OUT_OF_RESOURCES_NUMBER_OF_MATCHES, OUT_OF_RESOURCES_SUB_OPERATIONS,
    CANCEL,
})
UNABLE_TO_PROCESS_MASK = 0xF000  # the Q/R "unable to process" range 0xCxxx


def find_identifier(order: PrefetchOrder) -> Dataset:
    """The C-FIND identifier of a prefetch: its match keys and the study keys it sorts by (QueryKeyError if bad)."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = STUDY_LEVEL
    for key, value in order.prefetch.match:
        if not value.strip():
            raise QueryKeyError(f"the match key {key} is empty: it would match every patient")
        set_query_key(identifier, f"{key}={value}")
    for keyword in RETURN_KEYS:
        if keyword not in identifier:
            setattr(identifier, keyword, "")
    return identifier


def most_recent(matches: list[Dataset], order: PrefetchOrder) -> tuple[list[str], tuple[str, ...]]:
    """The other studies the C-FIND found (each once), and the `studies` most recent of them, newest first."""
    dated: dict[str, tuple[str, str]] = {}
    for match in matches:
        uid = str(match.get("StudyInstanceUID", "")).strip()
        if uid and uid != order.study_uid:
            dated[uid] = (str(match.get("StudyDate", "")).strip(), str(match.get("StudyTime", "")).strip())
    newest_first = sorted(dated, key=lambda uid: dated[uid], reverse=True)
    return newest_first, tuple(newest_first[: order.prefetch.studies])


def status_outcome(status: int, service: Service) -> Outcome:
    """The outcome of a C-FIND's or C-MOVE's final status."""
    if status == SUCCESS:
        return DELIVERED
    reason = describe(status, service)
    unable = classify(status) is StatusClass.FAILURE and status & UNABLE_TO_PROCESS_MASK == UNABLE_TO_PROCESS
    if status in WORTH_A_RETRY or unable:
        return transient(reason)
    if status == MOVE_DESTINATION_UNKNOWN:
        return permanent(f"{reason}: the source does not know the move destination")
    return permanent(reason)


class Prefetcher(HoldsNothingOpen):
    """Runs prefetch jobs against one Q/R destination, one association per attempt (one thread's)."""

    def __init__(self, destination: DicomDestination, ae: AE, max_pdu: int) -> None:
        self.destination = destination
        self.ae = ae
        self.max_pdu = max_pdu

    def send(self, job: Job) -> Outcome:
        """One attempt of the prefetch `job`, resumed from its progress."""
        assert job.order is not None, "a prefetch job carries its order"
        try:
            identifier = find_identifier(job.order)
        except QueryKeyError as exc:
            return permanent(f"cannot query: {exc}")
        contexts = [build_context(FIND_MODEL, SYNTAXES), build_context(MOVE_MODEL, SYNTAXES)]
        address = self.destination.address
        assoc = self.ae.associate(
            address.host, address.port, contexts=contexts, ae_title=self.destination.ae_title, max_pdu=self.max_pdu
        )
        if not assoc.is_established:
            return transient(f"cannot associate with {address} (no connection, rejected or aborted)", destination_down=True)
        try:
            return self._prefetch(assoc, job.order, identifier, job.progress)
        finally:
            if assoc.is_established:
                assoc.release()

    def _prefetch(self, assoc: Association, order: PrefetchOrder, identifier: Dataset, progress: PrefetchProgress) -> Outcome:
        refused = _refused_models(assoc)
        if refused:
            return permanent(f"the source refuses {refused}")
        if progress.chosen is None:
            final, matches = _find(assoc, identifier)
            if final is not DELIVERED:
                return replace(final, reason=f"C-FIND: {final.reason}", progress=progress)
            found, chosen = most_recent(matches, order)
            progress = PrefetchProgress(chosen, (), len(found))
        failures = []
        for study in progress.remaining:
            outcome = _move(assoc, study, order.prefetch.move_destination)
            if outcome is DELIVERED:
                progress = replace(progress, moved=(*progress.moved, study))
                continue
            failures.append((study, outcome))
            if outcome.destination_down:
                break
        if not failures:
            return replace(DELIVERED, progress=progress)
        kinds = {outcome.kind for _, outcome in failures}
        reason = "; ".join(f"C-MOVE of study {study}: {outcome.reason}" for study, outcome in failures)
        kind = OutcomeKind.TRANSIENT if OutcomeKind.TRANSIENT in kinds else OutcomeKind.PERMANENT
        down = any(outcome.destination_down for _, outcome in failures)
        return Outcome(kind, reason, down, progress)


def _refused_models(assoc: Association) -> str:
    """The query models the source did not accept, named ('' when both were)."""
    accepted = {context.abstract_syntax for context in assoc.accepted_contexts if context.as_scu}
    return " and ".join(uid_name(model) for model in (FIND_MODEL, MOVE_MODEL) if model not in accepted)


def _find(assoc: Association, identifier: Dataset) -> tuple[Outcome, list[Dataset]]:
    """Run the C-FIND; its outcome and the matches."""
    matches = []
    final = None
    for status, match in assoc.send_c_find(identifier, FIND_MODEL):
        final = status.get("Status")
        if final is not None and classify(final) is StatusClass.PENDING and match is not None:
            matches.append(match)
    if final is None:
        return transient("no response (timeout or association lost)", destination_down=True), matches
    if classify(final) is StatusClass.WARNING:  # e.g. optional keys not supported: the matches are good
        return DELIVERED, matches
    return status_outcome(final, Service.QR_FIND), matches


def _move(assoc: Association, study: str, move_destination: str) -> Outcome:
    """C-MOVE one study to `move_destination`; the outcome of its final response."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = STUDY_LEVEL
    identifier.StudyInstanceUID = study
    final = None
    for status, _ in assoc.send_c_move(identifier, move_destination, MOVE_MODEL):
        final = status.get("Status")
    if final is None or classify(final) is StatusClass.PENDING:
        return transient("no final response (timeout or association lost)", destination_down=True)
    return status_outcome(final, Service.QR_MOVE)
