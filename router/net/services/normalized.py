"""The DIMSE-N services of PS3.7 chapter 10, SCU and SCP: N-EVENT-REPORT, N-GET, N-SET, N-ACTION,
N-CREATE and N-DELETE.

SCU: each `send_n_*` finds the context of the SOP class (or of `meta_uid`, the Meta SOP Class a
print session negotiates), sends the request with its data set in the context's transfer syntax
and returns `(status, data set)`: the response's status Dataset (empty when no response came in
`dimse_timeout`; the association is then aborted) and the response's data set decoded, or None.
N-DELETE returns the status alone. An N-EVENT-REPORT is sent by the SOP class's SCP, which may be
either end of the association: it goes on the context where we are the SCP, else (a peer that
negotiated no roles) on the one where we are the SCU, as pynetdicom does.

SCP: each `serve_n_*` runs its EVT_N_* handler, which answers `(status, data set)`, or the status
alone for EVT_N_DELETE. The status is an int or a Dataset whose error fields (Error Comment, Error
ID, Offending Element, Attribute Identifier List) go into the response; the data set goes back on
Success or Warning only. No handler bound: 0x0118 (No such SOP class, PS3.7 C.5: this SCP does not
provide the class). A handler that raises, or answers what cannot be sent: 0x0110 (Processing
failure). The response names the SOP instance it is about; an N-CREATE that left the choice to us
gets the handler's SOPInstanceUID or a new UID. Calls the handler queued with
`event.after_response(call)` run once the response is sent: a Storage Commitment SCP answers the
N-ACTION, then reports with an N-EVENT-REPORT.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import generate_uid

from router.net import evt
from router.net.datasets import decode_dataset, encode_dataset
from router.net.dimse import AssembledMessage
from router.net.dimse_messages import NActionRQ, NActionRSP, NCreateRQ, NCreateRSP, NDeleteRQ, NDeleteRSP
from router.net.dimse_messages import NEventReportRQ, NEventReportRSP, NGetRQ, NGetRSP, NSetRQ, NSetRSP
from router.net.dimse_messages import DimseMessage, status_dataset
from router.net.presentation import PresentationContext
from router.net.status import NO_SUCH_SOP_CLASS, PROCESSING_FAILURE, StatusClass, classify, describe
from router.net.status import MAX_ERROR_COMMENT, service_of, status_of

if TYPE_CHECKING:
    from router.net.association import Association

LOGGER = logging.getLogger("router.net")
REPLY_STATUSES = (StatusClass.SUCCESS, StatusClass.WARNING)  # the response may carry a data set


@dataclass(frozen=True)
class Operation:
    """What differs between the six services, on the SCP side."""

    name: str  # as logs print it: "Received Action Request"
    event: evt.EventType
    response: type[DimseMessage]
    replies: bool = True  # the handler answers (status, data set); N-DELETE's answers the status alone
    creates: bool = False  # N-CREATE: we may choose the instance UID


EVENT_REPORT = Operation("Event Report", evt.EVT_N_EVENT_REPORT, NEventReportRSP)
GET = Operation("Get", evt.EVT_N_GET, NGetRSP)
SET = Operation("Set", evt.EVT_N_SET, NSetRSP)
ACTION = Operation("Action", evt.EVT_N_ACTION, NActionRSP)
CREATE = Operation("Create", evt.EVT_N_CREATE, NCreateRSP, creates=True)
DELETE = Operation("Delete", evt.EVT_N_DELETE, NDeleteRSP, replies=False)


def _sop_class(message: Any) -> str:
    """The SOP class a request is about: Affected in N-EVENT-REPORT and N-CREATE, else Requested."""
    return getattr(message, "requested_sop_class_uid", None) or message.affected_sop_class_uid


def _tags(value: Any) -> tuple[int, ...]:
    """Tags as ints, from one tag or an iterable of them (ints, pydicom Tags, keywords, (group, element))."""
    if isinstance(value, int):
        return (int(value),)
    return tuple(int(Tag(tag)) for tag in value)


# Error fields a handler's status Dataset may carry, by keyword, and how each is sent.
_ERROR_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "ErrorComment": ("error_comment", lambda value: str(value)[:MAX_ERROR_COMMENT]),
    "ErrorID": ("error_id", int),
    "OffendingElement": ("offending_element", _tags),
    "AttributeIdentifierList": ("attribute_identifier_list", _tags),
}


# ---- SCU ------------------------------------------------------------------
def send_n_event_report(assoc, dataset, event_type, class_uid, instance_uid, msg_id=None, meta_uid=None):
    """Report event `event_type` of the instance; return (status, event reply)."""
    context = _reporting_context(assoc, meta_uid or class_uid)
    request = NEventReportRQ(_message_id(assoc, msg_id), class_uid, instance_uid, event_type)
    return _exchange(assoc, EVENT_REPORT, context, request, dataset)


def send_n_get(assoc, identifier_list, class_uid, instance_uid, msg_id=None, meta_uid=None):
    """Get the attributes tagged in `identifier_list` (all when empty); return (status, attribute list)."""
    context = _context(assoc, meta_uid or class_uid)
    request = NGetRQ(_message_id(assoc, msg_id), class_uid, instance_uid, _tags(identifier_list or ()))
    return _exchange(assoc, GET, context, request, None)


def send_n_set(assoc, dataset, class_uid, instance_uid, msg_id=None, meta_uid=None):
    """Modify the instance with the modification list `dataset`; return (status, attribute list)."""
    context = _context(assoc, meta_uid or class_uid)
    request = NSetRQ(_message_id(assoc, msg_id), class_uid, instance_uid)
    return _exchange(assoc, SET, context, request, dataset)


def send_n_action(assoc, dataset, action_type, class_uid, instance_uid, msg_id=None, meta_uid=None):
    """Ask for action `action_type` on the instance; return (status, action reply)."""
    context = _context(assoc, meta_uid or class_uid)
    request = NActionRQ(_message_id(assoc, msg_id), class_uid, instance_uid, action_type)
    return _exchange(assoc, ACTION, context, request, dataset)


def send_n_create(assoc, dataset, class_uid, instance_uid=None, msg_id=None, meta_uid=None):
    """Create an instance (its UID chosen by the peer when `instance_uid` is None); return (status, attribute list)."""
    context = _context(assoc, meta_uid or class_uid)
    request = NCreateRQ(_message_id(assoc, msg_id), class_uid, instance_uid or "")
    return _exchange(assoc, CREATE, context, request, dataset)


def send_n_delete(assoc, class_uid, instance_uid, msg_id=None, meta_uid=None) -> Dataset:
    """Delete the instance; return the status Dataset."""
    context = _context(assoc, meta_uid or class_uid)
    request = NDeleteRQ(_message_id(assoc, msg_id), class_uid, instance_uid)
    status, _ = _exchange(assoc, DELETE, context, request, None)
    return status


def _context(assoc: "Association", sop_class: str) -> PresentationContext:
    assoc.require_established()
    return assoc.find_context(sop_class, as_scu=True)


def _reporting_context(assoc: "Association", sop_class: str) -> PresentationContext:
    assoc.require_established()
    try:
        return assoc.find_context(sop_class, as_scu=False)
    except ValueError as no_scp_context:
        try:
            return assoc.find_context(sop_class, as_scu=True)
        except ValueError:
            raise no_scp_context from None


def _message_id(assoc: "Association", msg_id: int | None) -> int:
    return assoc.next_message_id() if msg_id is None else msg_id


def _exchange(
    assoc: "Association", operation: Operation, context: PresentationContext, request: Any, dataset: Dataset | None
) -> tuple[Dataset, Dataset | None]:
    """Send `request` (with `dataset`) and wait for its response: (status, decoded data set or None)."""
    syntax = context.transfer_syntax[0]
    encoded = None if dataset is None else encode_dataset(dataset, syntax)
    LOGGER.info("Sending %s Request: MsgID %d", operation.name, request.message_id)
    assoc.send_message(context.context_id, request, encoded)
    response = assoc.receive_response(request.message_id, assoc.dimse_timeout)
    if response is None:
        return Dataset(), None
    if LOGGER.isEnabledFor(logging.INFO):
        service = service_of(_sop_class(request))
        LOGGER.info("Received %s Response (Status: %s)", operation.name, describe(response.message.status, service))
    return status_dataset(response.message), _decoded_reply(response.dataset, syntax)


def _decoded_reply(data: bytes | None, syntax: str) -> Dataset | None:
    if not data:
        return None
    try:
        return decode_dataset(data, syntax)
    except Exception:  # wire input: a malformed data set is reported, not raised
        LOGGER.exception("Failed to decode the data set of the response")
        return None


# ---- SCP ------------------------------------------------------------------
def serve_n_event_report(assoc: "Association", request: AssembledMessage) -> None:
    """Answer an N-EVENT-REPORT-RQ with what EVT_N_EVENT_REPORT's handler returns."""
    message = request.message
    _serve(assoc, request, EVENT_REPORT, message.affected_sop_instance_uid, event_type_id=message.event_type_id)


def serve_n_get(assoc: "Association", request: AssembledMessage) -> None:
    """Answer an N-GET-RQ with the status and attribute list EVT_N_GET's handler returns."""
    _serve(assoc, request, GET, request.message.requested_sop_instance_uid)


def serve_n_set(assoc: "Association", request: AssembledMessage) -> None:
    """Answer an N-SET-RQ with the status and attribute list EVT_N_SET's handler returns."""
    _serve(assoc, request, SET, request.message.requested_sop_instance_uid)


def serve_n_action(assoc: "Association", request: AssembledMessage) -> None:
    """Answer an N-ACTION-RQ with the status and action reply EVT_N_ACTION's handler returns."""
    message = request.message
    _serve(assoc, request, ACTION, message.requested_sop_instance_uid, action_type_id=message.action_type_id)


def serve_n_create(assoc: "Association", request: AssembledMessage) -> None:
    """Answer an N-CREATE-RQ with the status and attribute list EVT_N_CREATE's handler returns."""
    _serve(assoc, request, CREATE, request.message.affected_sop_instance_uid)


def serve_n_delete(assoc: "Association", request: AssembledMessage) -> None:
    """Answer an N-DELETE-RQ with the status EVT_N_DELETE's handler returns."""
    _serve(assoc, request, DELETE, request.message.requested_sop_instance_uid)


@dataclass
class Answer:
    """What the SCP sends back: the status, its error fields and the encoded data set."""

    status: int
    details: dict[str, Any] = field(default_factory=dict)
    reply: Dataset | None = None
    encoded: bytes | None = None


def _serve(assoc: "Association", request: AssembledMessage, operation: Operation, instance_uid: str, **fields: Any) -> None:
    message = request.message
    context = assoc.accepted_context(request.context_id)
    LOGGER.info("Received %s Request (MsgID %d)", operation.name, message.message_id)
    followups: list[Callable[[], Any]] = []
    answer = _answer(assoc, operation, request, context, followups)
    answered_uid = instance_uid
    if operation.creates and not instance_uid and classify(answer.status) in REPLY_STATUSES:
        answered_uid = _created_instance_uid(answer.reply)
    response = operation.response(
        message.message_id, answer.status, _sop_class(message), answered_uid, **answer.details, **fields
    )
    try:
        assoc.send_message(request.context_id, response, answer.encoded)
    except ValueError:  # raised while encoding, before anything is sent: a field the handler chose
        LOGGER.exception(f"The answer of the handler bound to '{operation.event.name}' cannot be sent")
        failure = operation.response(message.message_id, PROCESSING_FAILURE, _sop_class(message), instance_uid, **fields)
        assoc.send_message(request.context_id, failure)
    _run_followups(operation, followups)


def _answer(
    assoc: "Association", operation: Operation, request: AssembledMessage, context: PresentationContext, followups: list
) -> Answer:
    """Run the handler; any failure of it, or of encoding what it returned, is a processing failure."""
    try:
        result = assoc.handlers.intervene(
            assoc, operation.event, _no_handler, request=request.message, context=context,
            _data=request.dataset, _followups=followups,
        )
        status, reply = result if operation.replies else (result, None)
        answer = Answer(status_of(status, PROCESSING_FAILURE), _error_details(status), reply)
        if reply is not None and classify(answer.status) in REPLY_STATUSES:
            answer.encoded = encode_dataset(reply, context.transfer_syntax[0])
        return answer
    except Exception:
        LOGGER.exception(f"Exception in the handler bound to '{operation.event.name}', or in what it returned")
        return Answer(PROCESSING_FAILURE)


def _no_handler(event: evt.Event) -> Any:
    LOGGER.error(f"No handler is bound to {event.event.name}: answering 0x{NO_SUCH_SOP_CLASS:04X}")
    return NO_SUCH_SOP_CLASS if event.event is evt.EVT_N_DELETE else (NO_SUCH_SOP_CLASS, None)


def _error_details(status: Any) -> dict[str, Any]:
    """The response fields a status Dataset carries besides Status (none for an int)."""
    if not isinstance(status, Dataset):
        return {}
    return {name: convert(status[keyword].value) for keyword, (name, convert) in _ERROR_FIELDS.items() if keyword in status}


def _created_instance_uid(reply: Dataset | None) -> str:
    uid = reply.get("SOPInstanceUID") if reply is not None else None
    return str(uid) if uid else generate_uid()


def _run_followups(operation: Operation, followups: list[Callable[[], Any]]) -> None:
    for call in followups:
        try:
            call()
        except Exception:  # like a handler's: it must never break the association
            LOGGER.exception(f"Exception in a call run after the {operation.name} response")
