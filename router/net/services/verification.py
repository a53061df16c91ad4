"""The Verification service: C-ECHO as SCU (`send_c_echo`) and SCP (`serve_c_echo`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset

from router.net import evt
from router.net.dimse import AssembledMessage
from router.net.dimse_messages import CEchoRQ, CEchoRSP, status_dataset
from router.net.presentation import VERIFICATION_SOP_CLASS
from router.net.status import PROCESSING_FAILURE, SUCCESS, describe, status_of

if TYPE_CHECKING:
    from router.net.association import Association

LOGGER = logging.getLogger("router.net")


def send_c_echo(assoc: "Association", msg_id: int | None = None) -> Dataset:
    """Send a C-ECHO-RQ and wait `dimse_timeout` for its response; empty Dataset if none."""
    assoc.require_established()
    context = assoc.find_context(VERIFICATION_SOP_CLASS)
    message_id = assoc.next_message_id() if msg_id is None else msg_id
    LOGGER.info("Sending Echo Request: MsgID %d", message_id)
    assoc.send_message(context.context_id, CEchoRQ(message_id, VERIFICATION_SOP_CLASS))
    response = assoc.receive_response(message_id, assoc.dimse_timeout)
    if response is None:
        return Dataset()
    status = response.message.status
    if LOGGER.isEnabledFor(logging.INFO):
        LOGGER.info("Received Echo Response (Status: %s)", describe(status))
    return status_dataset(response.message)


def _default_echo(event: evt.Event) -> int:
    return SUCCESS


def serve_c_echo(assoc: "Association", request: AssembledMessage) -> None:
    """Answer a C-ECHO-RQ with the status EVT_C_ECHO's handler returns (default Success)."""
    message = request.message
    LOGGER.info("Received Echo Request (MsgID %d)", message.message_id)
    context = assoc.accepted_context(request.context_id)
    try:
        answer = assoc.handlers.intervene(assoc, evt.EVT_C_ECHO, _default_echo, request=message, context=context)
        status = status_of(answer, PROCESSING_FAILURE)
    except Exception:
        LOGGER.exception("Exception in the handler bound to 'EVT_C_ECHO'")
        status = PROCESSING_FAILURE
    response = CEchoRSP(message.message_id, status, affected_sop_class_uid=message.affected_sop_class_uid)
    assoc.send_message(request.context_id, response)
