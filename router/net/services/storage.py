"""The Storage service: C-STORE as SCU (`send_c_store`) and SCP (`serve_c_store`).

The SCU sends a pydicom Dataset or a Part 10 file, the file streamed block by
block in its own transfer syntax once it is found whole (a file cut short is
not sent: router.net.whole_file), and gets the status as a Dataset
(`send_c_store`) or as the response message (`c_store_response`). The SCP hands EVT_C_STORE's handler the
received instance (`event.dataset`, decoded only when read; `event.file_meta`;
`event.encoded_dataset()`, the bytes as received; `event.save_as(path)`, a
rename when the data set was spooled) and answers with the status it returns
(an int, or a Dataset whose Status and ErrorComment are sent); once the peer has
the answer, the association makes the file the next instance will be saved
into, if this one took the last (`ReadyFile`).
With no handler bound the peer gets 0xC211 at once. A data set cut short (its
elements announce more bytes than came: a peer sending a truncated file as it
is) never reaches the handler: 0xC000 (cannot understand) with the element it
ends in as the Error Comment.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from typing import TYPE_CHECKING, Any, Iterable, Iterator, TypeVar

from pydicom.dataset import Dataset

from router.net import evt
from router.net.dimse import AssembledMessage
from router.net.dimse_messages import CStoreRQ, CStoreRSP, Priority, status_dataset
from router.net.sources import DatasetSource, source_for
from router.net.status import CANNOT_UNDERSTAND, MAX_ERROR_COMMENT, OUT_OF_RESOURCES, describe, status_of
from router.net.whole_file import NotWhole

if TYPE_CHECKING:
    from router.net.association import Association

LOGGER = logging.getLogger("router.net")
NO_HANDLER = 0xC211  # Failure (cannot understand): nobody is there to store the instance
HANDLER_FAILED = 0xC210  # Failure (cannot understand): the handler raised
UNLIMITED_WINDOW = 64  # requests kept outstanding when the acceptor allows any number
T = TypeVar("T")


def send_c_store(
    assoc: "Association",
    dataset: Dataset | str | os.PathLike,
    msg_id: int | None = None,
    priority: int = Priority.LOW,
    originator_aet: str | None = None,
    originator_id: int | None = None,
) -> Dataset:
    """Send one instance; return the response's status Dataset (empty if no response came).

    ValueError, and nothing sent, if no accepted context carries it or its file is cut short
    (NotWhole: the message says which element the file ends in); OSError if its file cannot be read.
    """
    response = c_store_response(assoc, dataset, msg_id, priority, originator_aet, originator_id)
    return Dataset() if response is None else status_dataset(response)


def c_store_response(
    assoc: "Association",
    dataset: Dataset | DatasetSource | str | os.PathLike,
    msg_id: int | None = None,
    priority: int = Priority.LOW,
    originator_aet: str | None = None,
    originator_id: int | None = None,
) -> CStoreRSP | None:
    """`send_c_store`, returning the C-STORE-RSP message itself (None if no response came).

    For a caller that only reads the status: building and reading the pydicom
    status Dataset cost a quarter of the CPU of sending a small instance.
    """
    assoc.require_established()
    message_id = _send_request(
        assoc,
        dataset,
        msg_id,
        priority=Priority(priority),
        move_originator_application_entity_title=originator_aet or "",
        move_originator_message_id=originator_id,
    )
    return _response(assoc, message_id)


def send_c_stores(
    assoc: "Association", datasets: Iterable[T], window: int | None = None
) -> Iterator[tuple[T, CStoreRSP | None | ValueError | OSError]]:
    """C-STORE every dataset (a pydicom Dataset, a file's path or a source) without waiting for
    each response: up to `window` requests are outstanding (PS3.7 D.3.3.3), by default the number
    the acceptor allowed in its Asynchronous Operations Window (1, one at a time, without one;
    "unlimited" is taken as UNLIMITED_WINDOW). The peer answers in order while the next data sets
    are already on their way, so sender and receiver work at the same time.

    Yields (dataset, outcome) in order, where outcome is the C-STORE-RSP, None when no response
    came (the association is then gone: nothing more is sent), or the error that kept the dataset
    from being sent: a ValueError (no accepted context for it, no SOP class or instance in it, its
    file cut short: NotWhole) or an OSError (its file could not be read); the next ones are sent
    all the same. A file that fails once its request has gone (removed or changed in the
    meantime) aborts the association: the rest get None.
    """
    assoc.require_established()
    if window is None:
        window = assoc.acceptor.asynchronous_operations[0] if assoc.is_requestor else 1
    window = window or UNLIMITED_WINDOW
    queue: deque[tuple[T, int | ValueError | OSError | None]] = deque()  # in order: a message ID, or the outcome
    in_flight = 0
    try:
        for dataset in datasets:
            while in_flight >= window or queue and not isinstance(queue[0][1], int):
                in_flight -= isinstance(queue[0][1], int)
                yield _outcome(assoc, *queue.popleft())
            if not assoc.is_established:
                queue.append((dataset, None))
                continue
            try:
                queue.append((dataset, _send_request(assoc, dataset)))
                in_flight += 1
            except (ValueError, OSError) as exc:
                queue.append((dataset, exc))
        while queue:
            yield _outcome(assoc, *queue.popleft())
    finally:  # the caller stopped reading: the responses still to come are no later request's
        for _, sent in queue:
            if isinstance(sent, int):
                assoc.abandon(sent)


def _outcome(assoc: "Association", dataset: Any, sent: int | ValueError | OSError | None) -> tuple[Any, CStoreRSP | ValueError | OSError | None]:
    if not isinstance(sent, int):
        return dataset, sent
    return dataset, _response(assoc, sent) if assoc.is_established else None


def _send_request(
    assoc: "Association", dataset: Dataset | DatasetSource | str | os.PathLike, msg_id: int | None = None, **fields: Any
) -> int:
    """Send one C-STORE-RQ (its optional `fields` as CStoreRQ names them) and its data set; its
    message ID. ValueError if no accepted context carries the data set or its file is cut short."""
    source = source_for(dataset)
    context = assoc.find_context(source.sop_class_uid, as_scu=True, transfer_syntax=source.transfer_syntax)
    message_id = assoc.next_message_id() if msg_id is None else msg_id
    request = CStoreRQ(message_id, source.sop_class_uid, source.sop_instance_uid, **fields)
    LOGGER.info("Sending Store Request: MsgID %d", message_id)
    assoc.send_message(context.context_id, request, source)
    return message_id


def _response(assoc: "Association", message_id: int) -> CStoreRSP | None:
    response = assoc.receive_response(message_id, assoc.dimse_timeout)
    if response is None:
        return None
    if LOGGER.isEnabledFor(logging.INFO):
        LOGGER.info("Received Store Response (Status: %s)", describe(response.message.status))
    return response.message


def _no_handler(event: evt.Event) -> int:
    LOGGER.error("No handler is bound to EVT_C_STORE: answering 0x%04X", NO_HANDLER)
    return NO_HANDLER


def serve_c_store(assoc: "Association", request: AssembledMessage) -> None:
    """Answer a C-STORE-RQ with the status EVT_C_STORE's handler returns."""
    message = request.message
    received = request.dataset
    if LOGGER.isEnabledFor(logging.INFO):
        LOGGER.info("Received Store Request (MsgID %d)", message.message_id)
    context = assoc.accepted_context(request.context_id)
    if received.error is not None:
        LOGGER.error(f"Refusing {message.affected_sop_instance_uid}: {received.error}")
        _respond(assoc, request, OUT_OF_RESOURCES, received.error)
        return
    try:
        received.check_whole(context.transfer_syntax[0])
    except NotWhole as exc:
        LOGGER.error(f"Refusing {message.affected_sop_instance_uid}: the data set is {exc}")
        received.discard()
        _respond(assoc, request, CANNOT_UNDERSTAND, f"data set {exc}")
        return
    comment = ""
    try:
        answer = assoc.handlers.intervene(
            assoc, evt.EVT_C_STORE, _no_handler, request=message, context=context, received=received
        )
        status = status_of(answer, HANDLER_FAILED)
        comment = str(answer.get("ErrorComment", "")) if isinstance(answer, Dataset) else ""
    except Exception:
        LOGGER.exception("Exception in the handler bound to 'EVT_C_STORE'")
        status = HANDLER_FAILED
    finally:
        received.discard()  # a spool file the handler did not keep
    _respond(assoc, request, status, comment)
    assoc.ready_file.refill()  # the next instance's file, made now that the peer has its answer


def _respond(assoc: "Association", request: AssembledMessage, status: int, comment: str = "") -> None:
    if not assoc.is_established:
        return  # the handler aborted it, or the peer left: nobody to answer
    message = request.message
    response = CStoreRSP(
        message.message_id,
        status,
        affected_sop_class_uid=message.affected_sop_class_uid,
        affected_sop_instance_uid=message.affected_sop_instance_uid,
        error_comment=comment[:MAX_ERROR_COMMENT],
    )
    assoc.send_message(request.context_id, response)
