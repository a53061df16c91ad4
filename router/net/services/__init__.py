"""DIMSE services: which module serves each request command an association receives.

Each service module provides the SCU call (`send_*`) and the SCP side
(`serve_*`); `serve_request` routes an incoming request by its command field.
A request for a service we do not provide is answered with 0x0211
(Unrecognized operation) when a response exists for it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from router.net.dimse import AssembledMessage
from router.net.dimse_messages import MESSAGE_TYPES, RESPONSE_BIT, CommandField
from router.net.services import normalized, query, retrieve, storage, verification
from router.net.status import UNRECOGNIZED_OPERATION

if TYPE_CHECKING:
    from router.net.association import Association

LOGGER = logging.getLogger("router.net")

SERVICES: dict[CommandField, Callable[["Association", AssembledMessage], None]] = {
    CommandField.C_ECHO_RQ: verification.serve_c_echo,
    CommandField.C_STORE_RQ: storage.serve_c_store,
    CommandField.C_FIND_RQ: query.serve_c_find,
    CommandField.C_CANCEL_RQ: query.serve_c_cancel,
    CommandField.C_GET_RQ: retrieve.serve_c_get,
    CommandField.C_MOVE_RQ: retrieve.serve_c_move,
    CommandField.N_EVENT_REPORT_RQ: normalized.serve_n_event_report,
    CommandField.N_GET_RQ: normalized.serve_n_get,
    CommandField.N_SET_RQ: normalized.serve_n_set,
    CommandField.N_ACTION_RQ: normalized.serve_n_action,
    CommandField.N_CREATE_RQ: normalized.serve_n_create,
    CommandField.N_DELETE_RQ: normalized.serve_n_delete,
}


def serve_request(assoc: "Association", request: AssembledMessage) -> None:
    """Serve one request the peer sent on `assoc`."""
    message = request.message
    service = SERVICES.get(message.command_field)
    if service is not None:
        service(assoc, request)
        return
    LOGGER.error(f"No service for a {message.command_field.name} request: answering 0x{UNRECOGNIZED_OPERATION:04X}")
    response_type = MESSAGE_TYPES.get(message.command_field | RESPONSE_BIT)
    if response_type is None:
        return  # C-CANCEL has no response
    assoc.send_message(request.context_id, response_type(message.message_id, UNRECOGNIZED_OPERATION))
