"""The Query/Retrieve service's C-GET and C-MOVE: SCU (`send_c_get`, `send_c_move`) and SCP
(`serve_c_get`, `serve_c_move`).

SCU: both calls yield `(status, identifier)` per response until the final one, as C-FIND does
(`query.exchange`); a pending status carries the sub-operation counts. A C-GET's instances come
back as C-STORE requests on the same association, served meanwhile by its EVT_C_STORE handler:
the requestor proposes their storage contexts with the SCP role (`build_role(uid,
scp_role=True)`). A final Warning, Failure or Cancel carries the Failed SOP Instance UID List.

SCP: EVT_C_GET's handler is a generator that yields the number of sub-operations, then
`(status, instance)`: 0xFF00 with a Dataset or a Part 10 file's path (streamed, never read whole)
per C-STORE sub-operation (or an `Unsendable`: that sub-operation fails, its reason logged), or
a final status with None, which ends the retrieve. EVT_C_MOVE's
handler first yields the destination's `(address, port)`, or `(address, port, associate
kwargs)`, or `(None, None)` for an unknown one (0xA801, Move destination unknown). C-GET sends
each instance on the same association; C-MOVE on an association of its own to the destination,
which proposes the (SOP class, transfer syntax) pairs of the instances read ahead, so compressed
data passes through untouched, and is opened again for an instance it offered no context for.
A Dataset in an uncompressed little endian syntax may be sent in either one. A pending response
follows each sub-operation; a C-CANCEL stops the retrieve after the current one with 0xFE00.

Final statuses (PS3.4 C.4.2.3.1, C.4.3.3.1): Success when every sub-operation completed; 0xB000
when some failed or warned; 0xA702 (Refused: unable to perform sub-operations) when all failed.
A known destination that cannot be reached, or that rejects the association, is not "unknown":
PS3.4 counts a sub-operation the SCP could not perform as failed, so every one fails and the
answer is 0xA702 with all of them listed, as DCMTK's dcmqrscp answers (pynetdicom says 0xA801).
No handler, or a handler that raises: 0xC411 (C-GET) / 0xC511 (C-MOVE), Failed: unable to
process; a count or a destination that makes no sense: 0xC413 / 0xC513.
"""

from __future__ import annotations

import logging
import operator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from pydicom.dataset import Dataset

from router.net import evt
from router.net.datasets import decode_dataset, encode_dataset
from router.net.dimse import AssembledMessage
from router.net.dimse_messages import CGetRQ, CGetRSP, CMoveRQ, CMoveRSP, DimseMessage, Priority
from router.net.services.query import cancel_check, exchange
from router.net.services.sub_operations import Answers, Destination, Instance, store
from router.net.status import CANCEL, MOVE_DESTINATION_UNKNOWN, OUT_OF_RESOURCES_SUB_OPERATIONS, PENDING
from router.net.status import SUB_OPERATIONS_WITH_FAILURES, SUCCESS, Service, StatusClass, classify, describe
from router.net.status import comment_of, status_of
from router.net.values import validate_ae_title

if TYPE_CHECKING:
    from router.net.association import Association

LOGGER = logging.getLogger("router.net")
GET_UNABLE_TO_PROCESS = 0xC411  # Failed: unable to process (no handler, or it raised)
GET_INVALID_ANSWER = 0xC413  # Failed: unable to process (the handler's count makes no sense)
MOVE_UNABLE_TO_PROCESS = 0xC511
MOVE_INVALID_ANSWER = 0xC513  # ... its count or destination makes no sense
MAX_SUB_OPERATIONS = 0xFFFF  # the counts are US


# ---- SCU ------------------------------------------------------------------------------
def send_c_get(
    assoc: "Association", dataset: Dataset, query_model: str, msg_id: int | None = None, priority: int = Priority.LOW
) -> Iterator[tuple[Dataset, Dataset | None]]:
    """Yield `(status, identifier)` per C-GET response; the instances arrive meanwhile as C-STOREs."""

    def request(message_id: int, sop_class_uid: str) -> CGetRQ:
        return CGetRQ(message_id, sop_class_uid, priority=Priority(priority))

    return exchange(assoc, "Get", dataset, query_model, msg_id, request)


def send_c_move(
    assoc: "Association",
    dataset: Dataset,
    move_aet: str | bytes,
    query_model: str,
    msg_id: int | None = None,
    priority: int = Priority.LOW,
) -> Iterator[tuple[Dataset, Dataset | None]]:
    """Yield `(status, identifier)` per C-MOVE response; the SCP stores the instances at `move_aet`."""
    destination = validate_ae_title(move_aet)

    def request(message_id: int, sop_class_uid: str) -> CMoveRQ:
        return CMoveRQ(message_id, sop_class_uid, destination, priority=Priority(priority))

    return exchange(assoc, "Move", dataset, query_model, msg_id, request)


# ---- SCP: what a retrieve counts, sends and answers ----------------------------------------
@dataclass(frozen=True)
class Retrieve:
    """What differs between C-GET and C-MOVE on the SCP side."""

    name: str  # as logs print it: "Received Get Request"
    event: evt.EventType
    response: type[DimseMessage]
    service: Service
    unable_to_process: int
    invalid_answer: int


GET = Retrieve("Get", evt.EVT_C_GET, CGetRSP, Service.QR_GET, GET_UNABLE_TO_PROCESS, GET_INVALID_ANSWER)
MOVE = Retrieve("Move", evt.EVT_C_MOVE, CMoveRSP, Service.QR_MOVE, MOVE_UNABLE_TO_PROCESS, MOVE_INVALID_ANSWER)


@dataclass
class Progress:
    """The C-STORE sub-operations of a retrieve so far, and the instances that failed."""

    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)

    def record(self, status: int | None, sop_instance_uid: str) -> None:
        """Count one sub-operation by its C-STORE status; None: it could not be performed."""
        self.remaining -= 1
        outcome = StatusClass.FAILURE if status is None else classify(status)
        if outcome is StatusClass.SUCCESS:
            self.completed += 1
        elif outcome is StatusClass.WARNING:
            self.warning += 1
        else:
            self.failed += 1
            if sop_instance_uid:
                self.failed_uids.append(sop_instance_uid)

    def ended_by(self, status: int) -> int:
        """The final status when the handler ends the retrieve with `status` before its count.

        Success stands for what was performed; on a failure or a warning, what was not
        performed failed; a cancel keeps it as remaining (not initiated).
        """
        if status == SUCCESS:
            return self.outcome
        if status != CANCEL:
            self.failed += self.remaining
            self.remaining = 0
        return status

    @property
    def outcome(self) -> int:
        """The final status once the sub-operations ran (PS3.4 C.4.2.3.1)."""
        if not (self.failed or self.warning):
            return SUCCESS
        if self.completed or self.warning:
            return SUB_OPERATIONS_WITH_FAILURES
        return OUT_OF_RESOURCES_SUB_OPERATIONS

    def counts(self, status: int) -> dict[str, int]:
        """The response fields for `status`: Remaining only in a pending or a cancel response."""
        counts = {
            "number_of_completed_suboperations": self.completed,
            "number_of_failed_suboperations": self.failed,
            "number_of_warning_suboperations": self.warning,
        }
        if status in (PENDING, CANCEL):
            counts["number_of_remaining_suboperations"] = self.remaining
        return counts


class _Final(Exception):
    """Ends a retrieve before or instead of its sub-operations, with this final status (and the
    Error Comment the handler gave it)."""

    def __init__(self, status: int, comment: str = "") -> None:
        super().__init__(f"0x{status:04X}")
        self.status, self.comment = status, comment


class _NoHandler(Exception):
    """Nothing is bound to the retrieve's event."""


def _no_handler(event: evt.Event) -> Iterator:
    raise _NoHandler(event.event.name)


class Retrieval:
    """One C-GET or C-MOVE being served: its handler's answers, its progress and its responses."""

    def __init__(self, assoc: "Association", request: AssembledMessage, retrieve: Retrieve) -> None:
        self.assoc, self.request, self.retrieve = assoc, request, retrieve
        self.message = request.message
        self.context = assoc.accepted_context(request.context_id)
        self.syntax = self.context.transfer_syntax[0]
        self.is_cancelled = cancel_check(assoc, self.message.message_id)
        self.progress: Progress | None = None
        LOGGER.info("Received %s Request (MsgID %d)", retrieve.name, self.message.message_id)

    def serve(self, steps: Callable[[], int]) -> None:
        """Run `steps` to the final status (or the one they end with) and send the final response."""
        comment = ""
        try:
            status = steps()
        except _Final as final:
            status, comment = final.status, final.comment
        finally:
            self.assoc.cancelled_requests.discard(self.message.message_id)
        if self.assoc.is_established:
            LOGGER.info("%s SCP final response: %s", self.retrieve.name, describe(status, self.retrieve.service))
        self.respond(status, comment)

    def start(self, **attributes: Any) -> Iterator:
        """Call the handler bound to the event (or fail with unable-to-process); its answers."""
        name = self.retrieve.event.name
        try:
            identifier = decode_dataset(self.request.dataset or b"", self.syntax)
            return iter(self.assoc.handlers.intervene(
                self.assoc, self.retrieve.event, _no_handler, request=self.message, context=self.context,
                identifier=identifier, cancel_check=self.is_cancelled, **attributes,
            ))
        except _NoHandler:
            LOGGER.error("No handler is bound to %s: answering 0x%04X", name, self.retrieve.unable_to_process)
        except Exception:
            LOGGER.exception("Exception in the handler bound to '%s'", name)
        raise _Final(self.retrieve.unable_to_process)

    def first(self, handler: Iterator, what: str) -> Any:
        """What the handler yields before the sub-operations (`what`: its destination, its count)."""
        try:
            return next(handler)
        except StopIteration:
            LOGGER.error("The handler bound to %s ended before yielding its %s", self.retrieve.event.name, what)
            raise _Final(self.retrieve.invalid_answer) from None
        except Exception:
            LOGGER.exception("Exception in the handler bound to '%s'", self.retrieve.event.name)
            raise _Final(self.retrieve.unable_to_process) from None

    def count(self, handler: Iterator) -> int:
        """The number of sub-operations; a final `(status, None)` in its place ends the retrieve at once."""
        answer = self.first(handler, "number of sub-operations")
        if isinstance(answer, tuple) and len(answer) == 2 and answer[1] is None:
            status = status_of(answer[0], self.retrieve.unable_to_process)
            if classify(status) is not StatusClass.PENDING:
                raise _Final(status, comment_of(answer[0]))
        try:
            count = operator.index(answer)  # an int (numpy's too), not a float or a str
        except TypeError:
            count = -1
        if 0 <= count <= MAX_SUB_OPERATIONS:
            return count
        LOGGER.error("The handler bound to %s yielded %r as its number of sub-operations", self.retrieve.event.name, answer)
        raise _Final(self.retrieve.invalid_answer)

    def destination(self, handler: Iterator) -> Destination:
        """The move destination the handler yields; unknown: 0xA801 at once."""
        title = self.message.move_destination
        answer = self.first(handler, "move destination")
        try:
            address, port, *rest = answer
            options = dict(rest[0] or {}) if rest else {}
            if len(rest) > 1:
                raise ValueError("more than (address, port, kwargs)")
        except (TypeError, ValueError) as exc:
            LOGGER.error("The handler bound to EVT_C_MOVE yielded %r as the destination: %s", answer, exc)
            raise _Final(self.retrieve.invalid_answer) from None
        if address is None or port is None:
            LOGGER.error("Unknown move destination: %s", title)
            raise _Final(MOVE_DESTINATION_UNKNOWN)
        originator = (self.assoc.peer.ae_title, self.message.message_id)
        return Destination(self.assoc.ae, address, port, {"ae_title": title, **options}, originator, self.message.priority)

    def perform(self, handler: Iterator, count: int, send: Callable[[Instance, Answers], int | None]) -> int:
        """Run the sub-operations, each followed by a pending response; the final status."""
        self.progress = progress = Progress(count)
        answers = Answers(handler, count, self.retrieve.unable_to_process, self.retrieve.event)
        for answer in answers:
            if not self.assoc.is_established:
                break
            if self.is_cancelled():
                return CANCEL
            instance = answer.instance
            if instance is None:
                return progress.ended_by(answer.status)
            if instance.error:
                LOGGER.error("Sub-operation failed: %s", instance.error)
            progress.record(None if instance.error else send(instance, answers), instance.sop_instance_uid)
            self.respond(PENDING)
        if progress.remaining and self.assoc.is_established:
            LOGGER.warning("The handler bound to %s yielded %d instances fewer than it announced", self.retrieve.event.name, progress.remaining)
        return progress.outcome

    def respond(self, status: int, comment: str = "") -> None:
        """Send a response: with the counts once sub-operations began; with the failed list if final
        and not Success; with the handler's Error Comment if it gave one."""
        if not self.assoc.is_established:
            return
        progress, encoded = self.progress, None
        counts = progress.counts(status) if progress is not None else {}
        if progress is not None and classify(status) not in (StatusClass.PENDING, StatusClass.SUCCESS):
            identifier = Dataset()
            identifier.FailedSOPInstanceUIDList = progress.failed_uids
            encoded = encode_dataset(identifier, self.syntax)
        response = self.retrieve.response(
            self.message.message_id, status, affected_sop_class_uid=self.message.affected_sop_class_uid,
            error_comment=comment, **counts,
        )
        self.assoc.send_message(self.request.context_id, response, encoded)


def serve_c_get(assoc: "Association", request: AssembledMessage) -> None:
    """Run EVT_C_GET's handler and send each instance back in a C-STORE on this association."""
    retrieval = Retrieval(assoc, request, GET)
    priority = request.message.priority

    def steps() -> int:
        handler = retrieval.start()
        count = retrieval.count(handler)
        return retrieval.perform(handler, count, lambda instance, answers: store(assoc, instance, priority))

    retrieval.serve(steps)


def serve_c_move(assoc: "Association", request: AssembledMessage) -> None:
    """Run EVT_C_MOVE's handler and send each instance in a C-STORE on an association with the destination."""
    retrieval = Retrieval(assoc, request, MOVE)

    def steps() -> int:
        handler = retrieval.start(move_destination=request.message.move_destination)
        destination = retrieval.destination(handler)
        count = retrieval.count(handler)
        try:
            return retrieval.perform(handler, count, destination.send)
        finally:
            destination.release()

    retrieval.serve(steps)
