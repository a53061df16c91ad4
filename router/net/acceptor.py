"""The acceptor's side: serve one incoming connection from A-ASSOCIATE-RQ to close.

A server thread runs `AcceptorAssociation.serve()`: ARTIM closes a connection
that never sends a request, the request is decided by `acse.negotiate` after
the extended-negotiation events (EVT_USER_ID, EVT_ASYNC_OPS, EVT_SOP_EXTENDED,
EVT_SOP_COMMON) had their say, and then requests are served until the peer
releases or aborts, the network timeout passes, or the server shuts down.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any, Callable

from router.net import evt
from router.net.acse import AcceptorPolicy, negotiate
from router.net.association import Association
from router.net.codes import RejectResult, RejectSource, UserRejectReason
from router.net.connection import AssociationRequested, Connection, Indication, Role
from router.net.dimse import carries_data
from router.net.driver import Link
from router.net.log import log_lines, reject_text, summarize_accept, summarize_request
from router.net.pdu import AssociateAC, AssociateRJ, AssociateRQ
from router.net.pdu_items import AsyncOperationsWindow, SOPClassExtended, UserIdentityAC

if TYPE_CHECKING:
    from router.net.server import AssociationServer

LOGGER = logging.getLogger("router.net")
SYNCHRONOUS_WINDOW = (1, 1)


def _accept_identity_unchecked(event: evt.Event) -> tuple[bool, None]:
    return True, None


def _synchronous_window(event: evt.Event) -> tuple[int, int]:
    return SYNCHRONOUS_WINDOW


def allow_outstanding(limit: int) -> Callable[[evt.Event], tuple[int, int]]:
    """An EVT_ASYNC_OPS handler letting the requestor keep up to `limit` operations outstanding
    (fewer if it asked for fewer). They are still performed one at a time, in order: the window
    only lets the requestor send the next request before the last response."""

    def window(event: evt.Event) -> tuple[int, int]:
        asked = event.nr_invoked
        return (min(asked, limit) if asked else limit, 1)

    return window


def _no_extended_replies(event: evt.Event) -> dict:
    return {}


class AcceptorAssociation(Association):
    """An association a peer requested from one of our servers."""

    def __init__(self, server: "AssociationServer", sock: socket.socket, address: tuple[str, int]) -> None:
        super().__init__(server.ae, Role.ACCEPTOR, evt.HandlerRegistry(server.handlers.specs()))
        self.server = server
        self.admitted = False  # holds one of the AE's association slots (see server.at_limit)
        self.requestor.address, self.requestor.port = address[:2]
        self.acceptor.ae_title = server.ae_title
        self.called_ae_title = ""  # the title the requestor called: ours, or any when require_called_aet is off
        self.acceptor.address, self.acceptor.port = sock.getsockname()[:2]
        self.acceptor.maximum_length = self.ae.maximum_pdu_size
        connection = Connection(
            Role.ACCEPTOR, artim_timeout=self.ae.artim_timeout, max_pdata_length=self.ae.maximum_pdu_size
        )
        self.attach(Link(sock, connection))

    def serve(self) -> None:
        """Run the association to its end (the server's thread target)."""
        link = self.link
        assert link is not None
        link.connection.transport_connected(link.now())
        self.notify(evt.EVT_CONN_OPEN, address=(self.requestor.address, self.requestor.port))
        try:
            while not link.closed:
                deadline = None
                if self.is_established and self.network_timeout is not None:
                    deadline = link.now() + self.network_timeout
                if not link.read(deadline):
                    if not link.interrupted:
                        LOGGER.error("Network timeout reached")
                    self.abort()
                    break
                self.process_indications()
        except Exception:
            LOGGER.exception("Unexpected error while serving an association: aborting it")
            self.abort()
        finally:
            link.close()
            self._closed()

    def on_negotiation(self, indication: Indication) -> None:
        if isinstance(indication, AssociationRequested):
            self._decide(indication.request)

    def _decide(self, request: AssociateRQ) -> None:
        info = request.user_information
        self.requestor.ae_title = request.calling_ae_title
        self.called_ae_title = request.called_ae_title
        self.requestor.describe_from(info)
        LOGGER.info("Association Received")
        LOGGER.debug("Request Parameters:")
        log_lines(logging.DEBUG, summarize_request, request, outgoing=False)
        self.notify(evt.EVT_REQUESTED)
        reply_items, identity_ok = self._extended_negotiation(request)
        policy = AcceptorPolicy(
            ae_title=self.server.ae_title,
            contexts=self.server.contexts,
            implementation=self.ae.implementation(self.ae.maximum_pdu_size),
            require_called_aet=self.ae.require_called_aet,
            require_calling_aet=self.ae.require_calling_aet,
            at_association_limit=self.server.at_limit(self),
            extra_user_items=reply_items,
            prefer_proposed_syntax=self.ae.prefer_proposed_syntax,
            unlisted_storage_syntaxes=self.ae.unlisted_storage_syntaxes,
        )
        outcome = negotiate(request, policy)
        reply = outcome.reply
        if isinstance(reply, AssociateAC) and not carries_data(info.maximum_length):
            LOGGER.error(f"The peer's maximum PDU length {info.maximum_length} cannot carry any data")
            reply = AssociateRJ(RejectResult.PERMANENT, RejectSource.SERVICE_USER, UserRejectReason.USER_NO_REASON)
        if isinstance(reply, AssociateAC) and not identity_ok:
            reply = AssociateRJ(RejectResult.PERMANENT, RejectSource.SERVICE_USER, UserRejectReason.USER_NO_REASON)
        if isinstance(reply, AssociateRJ):
            self._reject(reply)
        else:
            self._accept(reply, outcome.contexts)

    def _reject(self, reply: AssociateRJ) -> None:
        assert self.link is not None
        self.admitted = False  # a rejected request holds no slot while its connection closes
        LOGGER.info("Association Rejected")
        LOGGER.info(reject_text(reply))
        self.link.connection.reject(reply, self.link.now())
        self.link.flush()
        self.is_rejected = True
        self.reject_reason = reply
        self.notify(evt.EVT_REJECTED)

    def _accept(self, reply: AssociateAC, contexts: list) -> None:
        assert self.link is not None
        self.accepted_contexts = [c for c in contexts if c.accepted]
        self.rejected_contexts = [c for c in contexts if not c.accepted]
        LOGGER.debug("Accept Parameters:")
        log_lines(logging.DEBUG, summarize_accept, reply, contexts, outgoing=True)
        self.link.connection.accept(reply, self.link.now())
        self.link.flush()
        LOGGER.info("Association Accepted")
        self.is_established = True
        self.notify(evt.EVT_ACCEPTED)
        self.notify(evt.EVT_ESTABLISHED)

    def _extended_negotiation(self, request: AssociateRQ) -> tuple[list[Any], bool]:
        """Ask the intervention handlers; return the AC's extra sub-items and the identity verdict."""
        info = request.user_information
        items: list[Any] = []
        identity_ok = True
        identity = info.user_identity
        if identity is not None:
            identity_ok, response = self._intervene(
                evt.EVT_USER_ID,
                _accept_identity_unchecked,
                (False, None),
                user_id_type=int(identity.user_identity_type),
                primary_field=identity.primary_field,
                secondary_field=identity.secondary_field,
            )
            if identity_ok and response is not None and identity.positive_response_requested:
                items.append(UserIdentityAC(bytes(response)))
        if info.async_ops_window is not None:
            window = info.async_ops_window
            invoked, performed = self._intervene(
                evt.EVT_ASYNC_OPS, _synchronous_window, SYNCHRONOUS_WINDOW,
                nr_invoked=window.maximum_invoked, nr_performed=window.maximum_performed,
            )
            items.append(AsyncOperationsWindow(invoked, performed))
        if info.sop_class_extended:
            app_info = {item.sop_class_uid: item.service_class_application_information for item in info.sop_class_extended}
            replies = self._intervene(evt.EVT_SOP_EXTENDED, _no_extended_replies, {}, app_info=app_info)
            items.extend(SOPClassExtended(uid, bytes(data)) for uid, data in (replies or {}).items() if data is not None)
        if info.sop_class_common_extended:
            common = {item.sop_class_uid: item for item in info.sop_class_common_extended}
            self._intervene(evt.EVT_SOP_COMMON, _no_extended_replies, {}, items=common)
        return items, bool(identity_ok)

    def _intervene(self, event: evt.EventType, default: Any, on_error: Any, **attributes: Any) -> Any:
        try:
            return self.handlers.intervene(self, event, default, **attributes)
        except Exception:
            LOGGER.exception(f"Exception in the handler bound to '{event.name}'")
            return on_error
