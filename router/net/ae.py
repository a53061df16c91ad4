"""The Application Entity: the user's entry point (`AE`), as the seed documents describe it.

An `AE` holds the title, the requested and supported presentation contexts,
the timeouts and limits, and the implementation identity; `associate` opens an
association as requestor and `start_server` serves associations as acceptor.
"""

from __future__ import annotations

import logging
import math
import ssl
import threading
from typing import Iterable, Sequence

from router.net import evt
from router.net.acse import MAX_CONTEXTS, Implementation
from router.net.association import Association
from router.net.dimse import MIN_PDU_LENGTH
from router.net.presentation import PresentationContext, build_context
from router.net.received import DEFAULT_SPOOL_THRESHOLD
from router.net.requestor import RequestorAssociation
from router.net.server import AssociationServer, ThreadedAssociationServer
from router.net.values import validate_ae_title, validate_uid

LOGGER = logging.getLogger("router.net")

IMPLEMENTATION_CLASS_UID = "2.25.197341806212479253305834180613622385154"
IMPLEMENTATION_VERSION_NAME = "ROUTER_010"
DEFAULT_AE_TITLE = "ROUTER"
DEFAULT_CALLED_AE_TITLE = "ANY-SCP"
DEFAULT_MAX_PDU = 16382
DEFAULT_ACSE_TIMEOUT = 30.0
DEFAULT_DIMSE_TIMEOUT = 30.0
DEFAULT_NETWORK_TIMEOUT = 60.0
DEFAULT_MAXIMUM_ASSOCIATIONS = 10
MAX_VERSION_NAME_LENGTH = 16


def _timeout(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0 or None, not {value!r}")
    return float(value)


class AE:
    """A DICOM Application Entity; see the module docstring."""

    def __init__(self, ae_title: str | bytes = DEFAULT_AE_TITLE) -> None:
        self.ae_title = ae_title  # type: ignore[assignment]
        self._requested: list[PresentationContext] = []
        self._supported: list[PresentationContext] = []
        self._requestors: list[Association] = []
        self._servers: list[AssociationServer] = []
        self.lock = threading.Lock()  # guards the two lists above (a forking server holds it across fork)
        self.acse_timeout: float | None = DEFAULT_ACSE_TIMEOUT
        self.dimse_timeout: float | None = DEFAULT_DIMSE_TIMEOUT
        self.network_timeout: float | None = DEFAULT_NETWORK_TIMEOUT
        self.connection_timeout: float | None = None
        self.maximum_associations = DEFAULT_MAXIMUM_ASSOCIATIONS
        self.maximum_pdu_size = DEFAULT_MAX_PDU
        self.implementation_class_uid = IMPLEMENTATION_CLASS_UID
        self.implementation_version_name: str | None = IMPLEMENTATION_VERSION_NAME
        self.require_calling_aet: list[str] = []
        self.require_called_aet = False
        # Accept the requestor's first transfer syntax we support rather than our first one:
        # an SCU proposes its data's own syntax first, so a pass-through SCP gets the bytes unchanged.
        self.prefer_proposed_syntax = False
        # Syntaxes in which to accept a SOP class no supported context names, if it may be a Storage class
        # (private, or newer than our table); empty: refused. `accept_all_storage(ae, unlisted=True)` sets it.
        self.unlisted_storage_syntaxes: tuple[str, ...] = ()
        self.spool_directory: str | None = None  # where large received data sets spool; None: the temp dir
        self.spool_threshold = DEFAULT_SPOOL_THRESHOLD  # bytes kept in memory before spooling to a file

    # ---- validated settings -----------------------------------------------
    def __setattr__(self, name: str, value: object) -> None:
        setter = _SETTERS.get(name)
        super().__setattr__(name, setter(value) if setter else value)

    # ---- contexts ---------------------------------------------------------
    @property
    def requested_contexts(self) -> list[PresentationContext]:
        """The contexts `associate` proposes, in the order they were added."""
        return list(self._requested)

    @requested_contexts.setter
    def requested_contexts(self, contexts: Iterable[PresentationContext]) -> None:
        contexts = list(contexts)
        if len(contexts) > MAX_CONTEXTS:
            raise ValueError(f"At most {MAX_CONTEXTS} requested presentation contexts are allowed, not {len(contexts)}")
        self._requested = []
        for context in contexts:
            self.add_requested_context(context.abstract_syntax, context.transfer_syntax)

    def add_requested_context(self, abstract_syntax, transfer_syntax=None) -> None:
        """Add a context to propose; the same abstract syntax may appear more than once."""
        if len(self._requested) >= MAX_CONTEXTS:
            raise ValueError(
                f"Failed to add the requested presentation context: the maximum of {MAX_CONTEXTS} contexts is reached"
            )
        self._requested.append(build_context(abstract_syntax, transfer_syntax))

    def remove_requested_context(self, abstract_syntax, transfer_syntax=None) -> None:
        """Remove transfer syntaxes (or, without any, whole contexts) for `abstract_syntax`."""
        self._requested = _remove(self._requested, abstract_syntax, transfer_syntax)

    @property
    def supported_contexts(self) -> list[PresentationContext]:
        """The contexts servers accept, one per abstract syntax, sorted by UID."""
        return sorted(self._supported, key=lambda c: c.abstract_syntax)

    @supported_contexts.setter
    def supported_contexts(self, contexts: Iterable[PresentationContext]) -> None:
        self._supported = []
        for context in contexts:
            self.add_supported_context(context.abstract_syntax, context.transfer_syntax, context.scu_role, context.scp_role)

    def add_supported_context(self, abstract_syntax, transfer_syntax=None, scu_role=None, scp_role=None) -> None:
        """Support `abstract_syntax`; adding it again merges transfer syntaxes and updates roles."""
        new = build_context(abstract_syntax, transfer_syntax)
        existing = next((c for c in self._supported if c.abstract_syntax == new.abstract_syntax), None)
        if existing is None:
            existing = new
            self._supported.append(new)
        else:
            for syntax in new.transfer_syntax:
                existing.add_transfer_syntax(syntax)
        existing.scu_role, existing.scp_role = scu_role, scp_role

    def remove_supported_context(self, abstract_syntax, transfer_syntax=None) -> None:
        """Remove transfer syntaxes (or, without any, the context) for `abstract_syntax`."""
        self._supported = _remove(self._supported, abstract_syntax, transfer_syntax)

    @property
    def artim_timeout(self) -> float:
        """The ARTIM timer: how long a connection may wait for its A-ASSOCIATE-RQ, or for the
        peer to close after the association ended. It follows `acse_timeout`."""
        return DEFAULT_ACSE_TIMEOUT if self.acse_timeout is None else self.acse_timeout

    def implementation(self, max_pdu: int) -> Implementation:
        return Implementation(self.implementation_class_uid, self.implementation_version_name, max_pdu)

    # ---- requestor --------------------------------------------------------
    def associate(
        self,
        addr: str,
        port: int,
        contexts: Sequence[PresentationContext] | None = None,
        ae_title: str | bytes = DEFAULT_CALLED_AE_TITLE,
        max_pdu: int = DEFAULT_MAX_PDU,
        ext_neg: Sequence | None = None,
        bind_address: tuple[str, int] | None = None,
        tls_args: tuple[ssl.SSLContext, str | None] | None = None,
        evt_handlers: Sequence | None = None,
    ) -> Association:
        """Request an association with the peer at (addr, port); always returns an Association."""
        contexts = list(self._requested if contexts is None else contexts)
        if not contexts:
            raise RuntimeError("At least one requested presentation context is required before associating")
        if len(contexts) > MAX_CONTEXTS:
            raise ValueError(f"At most {MAX_CONTEXTS} presentation contexts may be requested, not {len(contexts)}")
        _pdu_size(max_pdu, "max_pdu")
        assoc = RequestorAssociation(self, evt.HandlerRegistry(evt_handlers), ext_neg or ())
        assoc.requestor.ae_title = self.ae_title
        assoc.acceptor.ae_title = validate_ae_title(ae_title)
        assoc.acceptor.address, assoc.acceptor.port = addr, port
        with self.lock:
            self._requestors.append(assoc)
        assoc.request((addr, port), contexts, max_pdu, bind_address, tls_args)
        if not assoc.is_established:
            self.forget(assoc)
        return assoc

    # ---- acceptor ---------------------------------------------------------
    def start_server(
        self,
        address: tuple[str, int],
        block: bool = True,
        ae_title: str | bytes | None = None,
        contexts: Sequence[PresentationContext] | None = None,
        evt_handlers: Sequence | None = None,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
        forking: bool = False,
    ) -> AssociationServer | None:
        """Serve associations on `address`; returns the running server when `block` is False.

        With `reuse_port`, several processes may listen on the same port and
        the kernel spreads the connections among them (SO_REUSEPORT). With
        `forking` (Linux), each association is served in a child process of its
        own, so associations use every core (router.net.child_processes).
        """
        title = self.ae_title if ae_title is None else validate_ae_title(ae_title)
        supported = list(self._supported if contexts is None else contexts)
        if not supported:
            raise ValueError("At least one supported presentation context is required to start a server")
        cls = AssociationServer if block else ThreadedAssociationServer
        server = cls(self, address, title, supported, evt_handlers, ssl_context, reuse_port, forking)
        with self.lock:
            self._servers.append(server)
        if not block:
            server.start()
            return server
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
        return None

    # ---- bookkeeping ------------------------------------------------------
    @property
    def active_associations(self) -> list[Association]:
        """Every association of this AE whose connection is open, in both roles."""
        with self.lock:
            requestors = [a for a in self._requestors if a.is_alive]
            servers = list(self._servers)
        return requestors + [a for server in servers for a in server.active_associations]

    def sockets_besides(self, server: AssociationServer) -> list:
        """The sockets this AE holds open outside `server`: the other servers' listening and
        wake-up sockets and its requestor associations' connections (a child forked by `server`
        closes its copies, so that they close for good when the parent closes them)."""
        with self.lock:
            servers = [other for other in self._servers if other is not server]
            requestors = list(self._requestors)
        sockets = [sock for other in servers for sock in other.own_sockets()]
        return sockets + [assoc.link.sock for assoc in requestors if assoc.link is not None]

    def forget(self, assoc: Association) -> None:
        """Drop a finished association from the bookkeeping."""
        with self.lock:
            if assoc in self._requestors:
                self._requestors.remove(assoc)

    def server_stopped(self, server: AssociationServer) -> None:
        with self.lock:
            if server in self._servers:
                self._servers.remove(server)

    def shutdown(self) -> None:
        """Stop every server this AE started and abort its requestor associations."""
        with self.lock:
            servers = list(self._servers)
            requestors = list(self._requestors)
        for server in servers:
            server.shutdown()
        for assoc in requestors:
            if assoc.link is not None:
                assoc.link.interrupt()


def _remove(contexts: list[PresentationContext], abstract_syntax, transfer_syntax) -> list[PresentationContext]:
    uid = validate_uid(abstract_syntax if not isinstance(abstract_syntax, PresentationContext) else abstract_syntax.abstract_syntax, "abstract syntax")
    if transfer_syntax is None:
        return [c for c in contexts if c.abstract_syntax != uid]
    removed = {validate_uid(ts, "transfer syntax") for ts in ([transfer_syntax] if isinstance(transfer_syntax, (str, bytes)) else transfer_syntax)}
    kept = []
    for context in contexts:
        if context.abstract_syntax == uid:
            context.transfer_syntax = [ts for ts in context.transfer_syntax if ts not in removed]
            if not context.transfer_syntax:
                continue
        kept.append(context)
    return kept


def _positive_int(name: str):
    def check(value: object) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, not {value!r}")
        return value

    return check


def _pdu_size(value: object, name: str = "maximum_pdu_size") -> int:
    """0 (no limit) or a length that can carry a fragment of data."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or 0 < value < MIN_PDU_LENGTH:
        raise ValueError(f"{name} must be 0 (no limit) or an int >= {MIN_PDU_LENGTH}, not {value!r}")
    return value


def _version_name(value: object) -> str | None:
    if value is None:
        return None
    name = value.decode("ascii") if isinstance(value, bytes) else str(value)
    if not 1 <= len(name) <= MAX_VERSION_NAME_LENGTH:
        raise ValueError(f"implementation_version_name must be 1 to {MAX_VERSION_NAME_LENGTH} characters, not {name!r}")
    return name


def _calling_titles(value: object) -> list[str]:
    titles = [value] if isinstance(value, (str, bytes)) else list(value)  # type: ignore[arg-type]
    return [validate_ae_title(title) for title in titles]


_SETTERS = {
    "ae_title": validate_ae_title,
    "acse_timeout": lambda v: _timeout(v, "acse_timeout"),
    "dimse_timeout": lambda v: _timeout(v, "dimse_timeout"),
    "network_timeout": lambda v: _timeout(v, "network_timeout"),
    "connection_timeout": lambda v: _timeout(v, "connection_timeout"),
    "maximum_associations": _positive_int("maximum_associations"),
    "maximum_pdu_size": _pdu_size,
    "implementation_class_uid": lambda v: validate_uid(v, "implementation class"),
    "implementation_version_name": _version_name,
    "require_calling_aet": _calling_titles,
    "require_called_aet": bool,
}
