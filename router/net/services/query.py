"""The Query service: C-FIND as SCU (`send_c_find`, `send_c_cancel`) and SCP (`serve_c_find`).

The SCU yields `(status, identifier)` for each response until the final one
(`exchange`, which C-GET and C-MOVE share, as they share `cancel_check`).
The SCP runs EVT_C_FIND's handler, a generator of `(status, identifier)`: each
pending match is sent as it is produced, and between matches the association
is checked for a C-CANCEL (`event.is_cancelled`), which ends the search with
0xFE00.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Iterator

from pydicom.dataset import Dataset

from router.net import evt
from router.net.datasets import decode_dataset, encode_dataset
from router.net.dimse import AssembledMessage
from router.net.dimse_messages import CCancelRQ, CFindRQ, CFindRSP, DimseMessage, Priority, status_dataset
from router.net.status import CANCEL, SUCCESS, StatusClass, classify, comment_of, is_final, status_of

if TYPE_CHECKING:
    from router.net.association import Association

LOGGER = logging.getLogger("router.net")
UNABLE_TO_PROCESS = 0xC311  # Failure (unable to process): no handler, or the handler failed


def send_c_find(
    assoc: "Association", dataset: Dataset, query_model: str, msg_id: int | None = None, priority: int = Priority.LOW
) -> Iterator[tuple[Dataset, Dataset | None]]:
    """Yield `(status, identifier)` per response; an empty status Dataset if none came."""

    def request(message_id: int, sop_class_uid: str) -> CFindRQ:
        return CFindRQ(message_id, sop_class_uid, priority=Priority(priority))

    return exchange(assoc, "Find", dataset, query_model, msg_id, request)


def exchange(
    assoc: "Association",
    name: str,
    dataset: Dataset,
    query_model: str,
    msg_id: int | None,
    build: Callable[[int, str], DimseMessage],
) -> Iterator[tuple[Dataset, Dataset | None]]:
    """Send the request `build(message_id, sop_class_uid)` makes (C-FIND, C-GET or C-MOVE) with
    `dataset` as its identifier; yield `(status, identifier)` per response until the final one, or
    an empty status Dataset if none came in time."""
    assoc.require_established()
    context = assoc.find_context(query_model, as_scu=True)
    syntax = context.transfer_syntax[0]
    message_id = assoc.next_message_id() if msg_id is None else msg_id
    LOGGER.info("Sending %s Request: MsgID %d", name, message_id)
    assoc.send_message(context.context_id, build(message_id, context.abstract_syntax), encode_dataset(dataset, syntax))
    final = False
    try:
        while not final:
            response = assoc.receive_response(message_id, assoc.dimse_timeout)
            if response is None:
                final = True  # timed out: the association is aborted
                yield Dataset(), None
                return
            final = is_final(response.message.status)
            identifier = decode_dataset(response.dataset, syntax) if response.dataset else None
            yield status_dataset(response.message), identifier
    finally:
        if not final:  # the caller stopped reading: the responses still to come are not for its next request
            assoc.abandon(message_id)


def send_c_cancel(assoc: "Association", msg_id: int, context_id: int | None = None, query_model: str | None = None) -> None:
    """Ask the peer to stop the C-FIND, C-GET or C-MOVE with message ID `msg_id` (no response)."""
    assoc.require_established()
    if context_id is None:
        if query_model is None:
            raise ValueError("send_c_cancel needs the context_id or the query_model of the request")
        context_id = assoc.find_context(query_model, as_scu=True).context_id
    LOGGER.info("Sending C-CANCEL for MsgID %d", msg_id)
    assoc.send_message(context_id, CCancelRQ(msg_id))


def serve_c_cancel(assoc: "Association", request: AssembledMessage) -> None:
    """Note a C-CANCEL: the running request with that message ID stops at its next step."""
    assoc.cancelled_requests.add(request.message.message_id_being_responded_to)


def cancel_check(assoc: "Association", message_id: int) -> Callable[[], bool]:
    """A check that reads what the peer sent so far and says whether it cancelled `message_id`;
    made as the request starts, when a C-CANCEL already noted for that ID can only be a late one
    for an earlier request with the same ID: it is forgotten."""
    assoc.cancelled_requests.discard(message_id)

    def is_cancelled() -> bool:
        assoc.poll_incoming()
        return message_id in assoc.cancelled_requests

    return is_cancelled


def _no_handler(event: evt.Event) -> Iterator[tuple[int, None]]:
    LOGGER.error("No handler is bound to EVT_C_FIND: answering 0x%04X", UNABLE_TO_PROCESS)
    yield UNABLE_TO_PROCESS, None


def serve_c_find(assoc: "Association", request: AssembledMessage) -> None:
    """Run EVT_C_FIND's handler and send its matches, then the final response."""
    message = request.message
    context = assoc.accepted_context(request.context_id)
    syntax = context.transfer_syntax[0]
    LOGGER.info("Received Find Request (MsgID %d)", message.message_id)

    def respond(status: int, identifier: Dataset | None = None, comment: str = "") -> None:
        if not assoc.is_established:
            return  # the peer aborted or released meanwhile: nobody to answer
        encoded = encode_dataset(identifier, syntax) if identifier is not None else None
        response = CFindRSP(message.message_id, status, affected_sop_class_uid=message.affected_sop_class_uid, error_comment=comment)
        assoc.send_message(request.context_id, response, encoded)

    is_cancelled = cancel_check(assoc, message.message_id)
    final = _run_handler(assoc, message, context, syntax, request.dataset, is_cancelled, respond)
    assoc.cancelled_requests.discard(message.message_id)
    respond(status_of(final, UNABLE_TO_PROCESS), comment=comment_of(final))


def _run_handler(assoc, message, context, syntax, data, is_cancelled, respond) -> object:
    """Send each pending match; return the final status (the handler's own Dataset, with its Error
    Comment, when it answered with one)."""
    try:
        identifier = decode_dataset(data or b"", syntax)
        matches = assoc.handlers.intervene(
            assoc, evt.EVT_C_FIND, _no_handler, request=message, context=context,
            identifier=identifier, cancel_check=is_cancelled,
        )
        for status, match in matches:
            if is_cancelled() or not assoc.is_established:
                return CANCEL
            code = status_of(status, UNABLE_TO_PROCESS)
            if classify(code) is not StatusClass.PENDING:
                return status
            respond(code, match)
    except Exception:
        LOGGER.exception("Exception in the handler bound to 'EVT_C_FIND'")
        return UNABLE_TO_PROCESS
    return CANCEL if is_cancelled() else SUCCESS
