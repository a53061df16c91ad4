"""The requestor's side of association establishment (what `AE.associate` runs).

Connect (TCP_NODELAY, optional TLS), send the A-ASSOCIATE-RQ, wait for the
answer within the ACSE timeout, and read the negotiated contexts. Failures
never raise: the returned Association says what happened and the log says why.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

from router.net import evt
from router.net.acse import build_request, contexts_from_accept
from router.net.association import Association
from router.net.dimse import carries_data
from router.net.connection import AssociationAccepted, AssociationRejected, Connection, Indication, Role
from router.net.driver import Link, open_connection
from router.net.log import log_lines, reject_text, summarize_accept, summarize_request
from router.net.presentation import PresentationContext

if TYPE_CHECKING:
    from router.net.ae import AE

LOGGER = logging.getLogger("router.net")


class RequestorAssociation(Association):
    """An association we requested."""

    def __init__(self, ae: "AE", handlers: evt.HandlerRegistry, ext_neg: Sequence) -> None:
        super().__init__(ae, Role.REQUESTOR, handlers)
        self.ext_neg = list(ext_neg)
        self._proposed: list[PresentationContext] = []

    def request(
        self,
        address: tuple[str, int],
        contexts: Sequence[PresentationContext],
        max_pdu: int,
        bind_address: tuple[str, int] | None,
        tls_args: tuple | None,
    ) -> None:
        """Run association establishment to its end: established, rejected or aborted."""
        request, self._proposed = build_request(
            self.acceptor.ae_title, self.requestor.ae_title, contexts, self.ae.implementation(max_pdu), self.ext_neg
        )
        self.requestor.maximum_length = max_pdu
        connection = Connection(Role.REQUESTOR, artim_timeout=self.ae.artim_timeout, max_pdata_length=max_pdu)
        LOGGER.info("Requesting Association")
        try:
            sock = open_connection(address, self.ae.connection_timeout, bind_address, tls_args)
        except OSError as exc:
            LOGGER.error("Association request failed: unable to connect to remote")
            LOGGER.error(f"TCP Initialisation Error: {exc.strerror or exc}")
            self.is_aborted = True
            return
        self.attach(Link(sock, connection))
        connection.request_association(request, Link.now())
        self.requestor.address, self.requestor.port = sock.getsockname()[:2]
        self.notify(evt.EVT_CONN_OPEN, address=address)
        LOGGER.debug("Request Parameters:")
        log_lines(logging.DEBUG, summarize_request, request, outgoing=True)
        connection.transport_connected(Link.now())
        self.link.flush()  # type: ignore[union-attr]
        decided = self.run_until(lambda: self.is_established or self.is_rejected or self.is_aborted, self.acse_timeout)
        if not decided:
            LOGGER.error("ACSE timeout reached while waiting for the association response")
            self.abort()

    def on_negotiation(self, indication: Indication) -> None:
        if isinstance(indication, AssociationAccepted):
            self._accepted(indication)
        elif isinstance(indication, AssociationRejected):
            LOGGER.error("Association Rejected")
            LOGGER.error(reject_text(indication.reject))
            self.is_rejected = True
            self.reject_reason = indication.reject
            self.notify(evt.EVT_REJECTED)

    def _accepted(self, indication: AssociationAccepted) -> None:
        accept = indication.accept
        info = accept.user_information
        self.acceptor.describe_from(info)
        contexts = contexts_from_accept(self._proposed, accept, self.ext_neg)
        self.accepted_contexts = [c for c in contexts if c.accepted]
        self.rejected_contexts = [c for c in contexts if not c.accepted]
        LOGGER.debug("Accept Parameters:")
        log_lines(logging.DEBUG, summarize_accept, accept, contexts, outgoing=False)
        if not carries_data(self.acceptor.maximum_length):
            LOGGER.error(f"The peer's maximum PDU length {self.acceptor.maximum_length} cannot carry any data: aborting")
            self.abort()
            return
        if not self.accepted_contexts:
            LOGGER.error("No Acceptable Presentation Contexts")
            self.abort()
            return
        LOGGER.info("Association Accepted")
        self.is_established = True
        self.notify(evt.EVT_ACCEPTED)
        self.notify(evt.EVT_ESTABLISHED)

