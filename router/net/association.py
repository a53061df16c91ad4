"""The `Association`: one DICOM association as users see it, in either role.

It owns the driver (`Link`), the negotiated contexts, the event handlers and
the DIMSE message flow: sending requests and waiting for their responses,
and serving the requests the peer sends. A requestor's association runs on
the caller's thread; an acceptor's runs on the thread its server gave it.
Services (C-ECHO here) live in `router.net.services` and plug in by command.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

from pydicom.dataset import Dataset

from router.net import evt
from router.net.codes import AbortSource
from router.net.connection import Aborted, AssociationAccepted, AssociationRejected
from router.net.connection import AssociationRequested, Closed, DataReceived, Indication
from router.net.connection import ReleaseConfirmed, ReleaseRequested, Role
from router.net.dimse import AssembledMessage, BytesSink, MessageAssembler, data_set_pdus, data_set_pdus_block_size
from router.net.dimse import encode_single_pdu, fragment
from router.net.dimse_messages import CommandField, encode_command
from router.net.driver import Link
from router.net.errors import DimseError
from router.net.fsm import State
from router.net.pdu import PDataTF
from router.net.pdu import decode as pdu_decode
from router.net.presentation import PresentationContext, uid_name
from router.net.received import ReadyFile, SpoolingSink, file_header
from router.net.sources import BLOCK_SIZE, DatasetSource
from router.net.status import is_final
from router.net.services import normalized, query, retrieve, serve_request, storage, verification

if TYPE_CHECKING:
    from router.net.ae import AE

LOGGER = logging.getLogger("router.net")
MESSAGE_ID_MODULUS = 1 << 16


@dataclass
class ServiceUser:
    """One side of the association: its title, address and what it negotiated."""

    ae_title: str = ""
    address: str = ""
    port: int = 0
    maximum_length: int | None = None
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    user_identity: Any = None
    role_selection: dict | None = None
    # (maximum operations invoked, performed) from its Asynchronous Operations Window item;
    # (1, 1), synchronous, without one. In an A-ASSOCIATE-AC, "invoked" is how many operations
    # the acceptor lets the requestor have outstanding (PS3.7 D.3.3.3).
    asynchronous_operations: tuple[int, int] = (1, 1)

    def describe_from(self, info: Any) -> None:
        """Take what the side said of itself in its A-ASSOCIATE user information."""
        self.maximum_length = info.maximum_length
        self.implementation_class_uid = info.implementation_class_uid
        self.implementation_version_name = info.implementation_version_name
        self.user_identity = info.user_identity
        window = info.async_ops_window
        if window is not None:
            self.asynchronous_operations = (window.maximum_invoked, window.maximum_performed)


class Association:
    """An association with a peer; see the module docstring."""

    def __init__(self, ae: "AE", role: Role, handlers: evt.HandlerRegistry) -> None:
        self.ae = ae
        self.role = role
        self.handlers = handlers
        self.link: Link | None = None
        self.requestor = ServiceUser()
        self.acceptor = ServiceUser()
        # The role never changes: which side is the peer is settled here, not asked per message.
        self.peer, self.local = (self.acceptor, self.requestor) if role is Role.REQUESTOR else (self.requestor, self.acceptor)
        self.is_established = False
        self.is_rejected = False
        self.is_aborted = False
        self.is_released = False
        self._contexts_by_id: dict[int, PresentationContext] = {}
        self.rejected_contexts: list[PresentationContext] = []
        self.acse_timeout = ae.acse_timeout
        self.dimse_timeout = ae.dimse_timeout
        self.network_timeout = ae.network_timeout
        self.reject_reason = None
        self._message_id = 0
        # Responses not yet taken, by the message ID they answer (C-FIND sends several).
        self._responses: dict[int, deque[AssembledMessage]] = {}
        # Requests whose caller stopped reading before the final response: their responses are dropped
        # as they come, and a new request with the same ID waits until the final one is in.
        self._abandoned: set[int] = set()
        self._assembler = MessageAssembler(self._dataset_sink)
        self._close_notified = False
        self._messages_received = 0  # every DIMSE message the peer sent, for the response timeout
        self.cancelled_requests: set[int] = set()  # message IDs the peer sent a C-CANCEL for
        self.ready_file = ReadyFile()  # the next received instance's file, made ahead

    def attach(self, link: Link) -> None:
        """Take over `link` and turn its traffic into events."""
        self.link = link
        link.connection.on_pdu_sent = self._on_pdu_sent
        link.connection.on_pdu_received = self._on_pdu_received
        self._watch_traffic()

    def _watch_traffic(self) -> None:
        """Hook the observers of every read, write and FSM step only while a handler wants their
        event: they would run several times per message for nobody."""
        if self.link is None:
            return
        bound = self.handlers.is_bound
        self.link.connection.on_transition = self._on_transition if bound(evt.EVT_FSM_TRANSITION) else None
        self.link.on_data_received = self._on_data_received if bound(evt.EVT_DATA_RECV) else None
        self.link.on_data_sent = self._on_data_sent if bound(evt.EVT_DATA_SENT) else None

    def _on_transition(self, old: State, event: Any, action: Any, new: State) -> None:
        self.notify(evt.EVT_FSM_TRANSITION, current_state=str(old), fsm_event=str(event), action=str(action), next_state=str(new))

    def _on_data_received(self, data: memoryview) -> None:
        self.notify(evt.EVT_DATA_RECV, data=data.tobytes())

    def _on_data_sent(self, chunks: list[bytes | memoryview]) -> None:
        self.notify(evt.EVT_DATA_SENT, data=b"".join(chunks))  # joined only for a watcher: it copies every byte

    def _on_pdu_sent(self, pdu: Any) -> None:
        self.notify(evt.EVT_PDU_SENT, pdu=pdu)
        if not isinstance(pdu, PDataTF):
            self.notify(evt.EVT_ACSE_SENT, primitive=pdu)

    def _on_pdu_received(self, pdu: Any) -> None:
        """Every received PDU but P-DATA-TF (whose EVT_PDU_RECV fires from _receive_pdata)."""
        self.notify(evt.EVT_PDU_RECV, pdu=pdu)
        self.notify(evt.EVT_ACSE_RECV, primitive=pdu)

    @property
    def accepted_contexts(self) -> list[PresentationContext]:
        """The negotiated contexts the acceptor accepted, in context ID order."""
        return list(self._contexts_by_id.values())

    @accepted_contexts.setter
    def accepted_contexts(self, contexts: list[PresentationContext]) -> None:
        self._contexts_by_id = {context.context_id: context for context in contexts}  # type: ignore[misc]

    def accepted_context(self, context_id: int) -> PresentationContext | None:
        """The accepted context with this ID, or None."""
        return self._contexts_by_id.get(context_id)

    # ---- handlers ---------------------------------------------------------
    def bind(self, event: evt.EventType, handler: Callable, args: list | None = None) -> None:
        """Bind `handler` to `event` on this association."""
        self.handlers.bind(event, handler, args)
        self._watch_traffic()

    def unbind(self, event: evt.EventType, handler: Callable) -> None:
        """Unbind `handler` from `event` on this association."""
        self.handlers.unbind(event, handler)
        self._watch_traffic()

    def get_handlers(self, event: evt.EventType) -> list:
        return self.handlers.handlers(event)

    def notify(self, event: evt.EventType, **attributes: Any) -> None:
        self.handlers.notify(self, event, **attributes)

    # ---- state ------------------------------------------------------------
    @property
    def is_acceptor(self) -> bool:
        return self.role is Role.ACCEPTOR

    @property
    def is_requestor(self) -> bool:
        return self.role is Role.REQUESTOR

    @property
    def is_alive(self) -> bool:
        """True while the transport is open."""
        return self.link is not None and not self.link.closed

    def next_message_id(self) -> int:
        """Message IDs 1, 2, ... 65535, then 1 again."""
        self._message_id = self._message_id % (MESSAGE_ID_MODULUS - 1) + 1
        return self._message_id

    # ---- user calls -------------------------------------------------------
    def release(self) -> None:
        """Release the association (A-RELEASE), waiting at most `acse_timeout` for the reply."""
        if not self.is_established or self.link is None:
            return
        LOGGER.info("Releasing Association")
        self.link.connection.release_request(self.link.now())
        self.link.flush()
        if not self.run_until(lambda: not self.is_established, self.acse_timeout):
            LOGGER.error("No reply to the A-RELEASE-RQ in time: aborting")
            self.abort()

    def abort(self) -> None:
        """Abort the association (A-ABORT, source service-user) and close the connection."""
        if self.link is None or self.link.closed:
            return
        if self.link.connection.state not in (State.STA1, State.STA13):
            LOGGER.info("Aborting Association")
            self.link.connection.abort(self.link.now())
            self.link.flush()
            self._mark_aborted()
        self.link.close()
        self._closed()

    # ---- DIMSE ------------------------------------------------------------
    def find_context(self, abstract_syntax: str, as_scu: bool = True, transfer_syntax: str | None = None):
        """The accepted context for `abstract_syntax` in the role we need, else ValueError."""
        for context in self._contexts_by_id.values():
            if context.abstract_syntax != abstract_syntax:
                continue
            if (context.as_scu if as_scu else context.as_scp) and transfer_syntax in (None, context.transfer_syntax[0]):
                return context
        syntax = f" with '{uid_name(transfer_syntax)}' transfer syntax" if transfer_syntax else ""
        role = "SCU" if as_scu else "SCP"
        raise ValueError(
            f"No presentation context for '{uid_name(abstract_syntax)}' has been accepted by the peer{syntax} for the {role} role"
        )

    def require_established(self) -> None:
        if not self.is_established:
            raise RuntimeError("The association with the peer has not been established")

    def send_message(self, context_id: int, message: Any, dataset: bytes | DatasetSource | None = None) -> None:
        """Encode, fragment to the peer's max PDU, and send one DIMSE message.

        A `DatasetSource` is streamed block by block, so a data set of any size
        is sent with bounded memory.
        """
        if self._abandoned and getattr(message, "message_id", None) in self._abandoned:
            if not self._settle_abandoned(message.message_id):
                return  # the association is gone: the caller's wait for a response says so
        if isinstance(dataset, DatasetSource):
            self._send_streamed(context_id, message, dataset)
            return
        assert self.link is not None
        command = encode_command(message, dataset is not None)
        if dataset is None:
            self._queue_command(context_id, command)
        else:
            for pdu in fragment(context_id, command, dataset, self.peer.maximum_length or 0):
                self.link.connection.send_data(pdu, self.link.now())
        self.link.flush()
        if evt.EVT_DIMSE_SENT in self.handlers.bound_events:
            self.notify(evt.EVT_DIMSE_SENT, message=message, context_id=context_id)

    def _queue_command(self, context_id: int, command: bytes) -> None:
        """Queue a command set's PDUs: one encoded P-DATA-TF when it fits and nobody watches PDUs."""
        assert self.link is not None
        connection, now, peer_max = self.link.connection, self.link.now(), self.peer.maximum_length or 0
        single = None if self.handlers.is_bound(evt.EVT_PDU_SENT) else encode_single_pdu(context_id, command, peer_max)
        if single is not None:
            connection.send_raw_data(single, now)
            return
        for pdu in fragment(context_id, command, None, peer_max):
            connection.send_data(pdu, now)

    def _send_streamed(self, context_id: int, message: Any, source: DatasetSource) -> None:
        assert self.link is not None
        connection, peer_max = self.link.connection, self.peer.maximum_length or 0
        self._queue_command(context_id, encode_command(message, True))
        link, observed = self.link, self.handlers.is_bound(evt.EVT_PDU_SENT)
        per_pdu = observed or self.handlers.is_bound(evt.EVT_FSM_TRANSITION)  # one P-DATA request each
        pending: list[bytes | memoryview] = []  # otherwise a block's PDUs go as one request

        def send_pending() -> None:
            if pending and not link.closed:
                connection.send_raw_data(tuple(pending), link.now())
            pending.clear()
            link.flush()  # one write for the block's PDUs

        def written_blocks() -> Iterator[memoryview]:
            for block in source.blocks(data_set_pdus_block_size(peer_max, BLOCK_SIZE)):
                yield block
                send_pending()  # every PDU of the block has been made: its views are still valid

        try:
            for chunks in data_set_pdus(context_id, written_blocks(), source.length, peer_max):
                if link.closed:
                    break
                if not per_pdu:
                    pending.extend(chunks)
                    continue
                connection.send_raw_data(chunks, link.now())
                if observed:  # the PDU as an object only for those who watch: decoding costs
                    self.notify(evt.EVT_PDU_SENT, pdu=pdu_decode(b"".join(chunks), 0).pdu)
        except (OSError, ValueError):  # the file is gone, or shorter or longer than it was
            self.abort()  # the peer waits for the rest of a data set nobody can send
            raise
        send_pending()
        if link.closed:
            self.process_indications()  # learn how it ended (the peer's abort, a lost connection)
            return
        self.notify(evt.EVT_DIMSE_SENT, message=message, context_id=context_id)

    def _dataset_sink(self, context_id: int, message: Any) -> Any:
        """Where a received data set goes: C-STORE data sets spool to a file past a threshold."""
        context = self._contexts_by_id.get(context_id)
        if message.command_field != CommandField.C_STORE_RQ or context is None:
            return BytesSink()
        header = file_header(
            message.affected_sop_class_uid,
            message.affected_sop_instance_uid,
            context.transfer_syntax[0],
            self.ae.implementation_class_uid,
            self.ae.implementation_version_name,
            self.peer.ae_title,
        )
        return SpoolingSink(header, self.ae.spool_directory, self.ae.spool_threshold, self.ready_file)

    def abandon(self, message_id: int) -> None:
        """The caller stopped reading the responses to `message_id` before the final one: those
        already here and those still to come are dropped (a later request may reuse the ID)."""
        waiting = self._responses.pop(message_id, ())
        if not any(is_final(response.message.status) for response in waiting):
            self._abandoned.add(message_id)

    def _settle_abandoned(self, message_id: int) -> bool:
        """Before a request reuses `message_id`: wait for the abandoned one's final response, the
        timeout counted from the peer's last message (as `receive_response`); False if the
        association ended meanwhile (aborted on the timeout)."""
        while message_id in self._abandoned:
            heard = self._messages_received
            if not self.run_until(lambda: message_id not in self._abandoned or self._messages_received != heard, self.dimse_timeout):
                if self.is_established:
                    LOGGER.error(f"DIMSE timeout: no final response to the abandoned request {message_id}, aborting")
                    self.abort()
                return False
        return self.is_established

    def receive_response(self, message_id: int, timeout: float | None) -> AssembledMessage | None:
        """Wait for the response to `message_id`; None on timeout (then abort) or loss of the association.

        The timeout counts from the last message the peer sent: the C-STOREs of
        a C-GET keep a long retrieve alive between its responses.
        """
        responses = self._responses
        while message_id not in responses:
            heard = self._messages_received
            if not self.run_until(lambda: message_id in responses or self._messages_received != heard, timeout):
                if self.is_established:
                    LOGGER.error("DIMSE timeout: no response from the peer, aborting")
                    self.abort()
                return None
        waiting = responses[message_id]
        response = waiting.popleft()
        if not waiting:
            del responses[message_id]
        return response

    def send_c_stores(self, datasets, window=None):
        """C-STORE each dataset or file with up to `window` requests outstanding (default: the
        window the acceptor allowed): a generator of (dataset, response message or None, or the
        ValueError that kept it from being sent), in order."""
        return storage.send_c_stores(self, datasets, window)

    # Message IDs default to 1, as pynetdicom's do (`send_c_cancel(1)` cancels the running C-FIND);
    # None takes the association's next ID. A C-FIND, C-GET or C-MOVE read only in part is abandoned
    # when its generator ends: what still comes for it is dropped, so the next request's ID 1 is safe.
    def send_c_echo(self, msg_id: int | None = 1) -> Dataset:
        """Send a C-ECHO-RQ; return the response's status Dataset, empty if none came."""
        return verification.send_c_echo(self, msg_id)

    def send_c_store(self, dataset, msg_id=1, priority=2, originator_aet=None, originator_id=None) -> Dataset:
        """Send a pydicom Dataset or a DICOM file (streamed); return the status Dataset."""
        return storage.send_c_store(self, dataset, msg_id, priority, originator_aet, originator_id)

    def send_c_find(self, dataset, query_model, msg_id=1, priority=2):
        """C-FIND: a generator of (status, identifier) for each response."""
        return query.send_c_find(self, dataset, query_model, msg_id, priority)

    def send_c_cancel(self, msg_id, context_id=None, query_model=None) -> None:
        """C-CANCEL the request with message ID `msg_id`."""
        query.send_c_cancel(self, msg_id, context_id, query_model)

    def send_c_get(self, dataset, query_model, msg_id=1, priority=2):
        """C-GET: a generator of (status, identifier); the instances arrive as C-STOREs on this association."""
        return retrieve.send_c_get(self, dataset, query_model, msg_id, priority)

    def send_c_move(self, dataset, move_aet, query_model, msg_id=1, priority=2):
        """C-MOVE to the AE titled `move_aet`: a generator of (status, identifier)."""
        return retrieve.send_c_move(self, dataset, move_aet, query_model, msg_id, priority)

    def send_n_event_report(self, dataset, event_type, class_uid, instance_uid, msg_id=1, meta_uid=None):
        """N-EVENT-REPORT: return (status, event reply) from the peer."""
        return normalized.send_n_event_report(self, dataset, event_type, class_uid, instance_uid, msg_id, meta_uid)

    def send_n_get(self, identifier_list, class_uid, instance_uid, msg_id=1, meta_uid=None):
        """N-GET the attributes tagged in `identifier_list`: return (status, attribute list)."""
        return normalized.send_n_get(self, identifier_list, class_uid, instance_uid, msg_id, meta_uid)

    def send_n_set(self, dataset, class_uid, instance_uid, msg_id=1, meta_uid=None):
        """N-SET with the modification list `dataset`: return (status, attribute list)."""
        return normalized.send_n_set(self, dataset, class_uid, instance_uid, msg_id, meta_uid)

    def send_n_action(self, dataset, action_type, class_uid, instance_uid, msg_id=1, meta_uid=None):
        """N-ACTION: return (status, action reply)."""
        return normalized.send_n_action(self, dataset, action_type, class_uid, instance_uid, msg_id, meta_uid)

    def send_n_create(self, dataset, class_uid, instance_uid=None, msg_id=1, meta_uid=None):
        """N-CREATE: return (status, attribute list)."""
        return normalized.send_n_create(self, dataset, class_uid, instance_uid, msg_id, meta_uid)

    def send_n_delete(self, class_uid, instance_uid, msg_id=1, meta_uid=None):
        """N-DELETE: return the status Dataset."""
        return normalized.send_n_delete(self, class_uid, instance_uid, msg_id, meta_uid)

    # ---- the loop ---------------------------------------------------------
    def run_until(self, done: Callable[[], bool], timeout: float | None) -> bool:
        """Serve the connection until `done()` or it closes; False if `timeout` ran out first."""
        link = self.link
        if link is None:
            return done()
        deadline = None if timeout is None else link.now() + timeout
        while not done():
            if link.closed or not link.read(deadline):
                self.process_indications()  # how it ended: the peer's abort, a lost connection
                return done()
            self.process_indications()
        return True

    def poll_incoming(self) -> None:
        """Handle what the peer has sent so far without waiting (e.g. a C-CANCEL mid C-FIND)."""
        if self.link is not None:
            self.link.poll()
            self.process_indications()

    def process_indications(self) -> None:
        """Handle every indication the connection has queued."""
        assert self.link is not None
        indications = self.link.connection.indications
        while indications:  # a handler may take some itself (a nested read): popped one at a time
            self.handle_indication(indications.popleft())

    def handle_indication(self, indication: Indication) -> None:
        """React to one indication of the Upper Layer."""
        if isinstance(indication, DataReceived):
            self._receive_pdata(indication)
        elif isinstance(indication, ReleaseRequested):
            self._peer_release(indication.collision)
        elif isinstance(indication, ReleaseConfirmed):
            self._release_confirmed()
        elif isinstance(indication, Aborted):
            self._peer_abort(indication)
        elif isinstance(indication, Closed):
            self._closed()
        elif isinstance(indication, (AssociationRequested, AssociationAccepted, AssociationRejected)):
            self.on_negotiation(indication)

    def on_negotiation(self, indication: Indication) -> None:
        """Overridden by the role that negotiates; unexpected indications are ignored."""

    def _receive_pdata(self, indication: DataReceived) -> None:
        if self.link is None or self.link.closed:
            return  # we aborted over data read with this (the rest of a read that held bad data)
        if evt.EVT_PDU_RECV in self.handlers.bound_events:
            self.notify(evt.EVT_PDU_RECV, pdu=indication.pdu)
        for pdv in indication.pdu.pdvs:
            result = self._assembler.feed(pdv)
            if isinstance(result, DimseError):
                LOGGER.error(f"Invalid DIMSE message from the peer: {result}")
                self.abort()
                return
            if result is not None:
                self._receive_message(result)

    def _receive_message(self, assembled: AssembledMessage) -> None:
        if assembled.context_id not in self._contexts_by_id:
            LOGGER.error(f"DIMSE message on presentation context {assembled.context_id}, which was not accepted")
            self.abort()
            return
        message = assembled.message
        self._messages_received += 1
        if evt.EVT_DIMSE_RECV in self.handlers.bound_events:
            self.notify(evt.EVT_DIMSE_RECV, message=message, context_id=assembled.context_id)
        if message.is_response:
            answered = message.message_id_being_responded_to
            if answered in self._abandoned:
                if is_final(message.status):
                    self._abandoned.discard(answered)
                    self._responses.pop(answered, None)  # filed while it was being abandoned: stale too
                return
            self._responses.setdefault(answered, deque()).append(assembled)
            return
        serve_request(self, assembled)

    def _peer_release(self, collision: bool) -> None:
        assert self.link is not None
        if collision and self.is_acceptor:
            return  # AR-8 for the acceptor: wait for the requestor's A-RELEASE-RP first
        self.link.connection.release_response(self.link.now())
        self.link.flush()
        if not collision:
            LOGGER.info("Association Released")
            self._mark_released()

    def _release_confirmed(self) -> None:
        assert self.link is not None
        if self.link.connection.state is State.STA12:
            self.link.connection.release_response(self.link.now())
            self.link.flush()
        self._mark_released()

    def _mark_released(self) -> None:
        if self.is_established:
            self.is_established = False
            self.is_released = True
            self.notify(evt.EVT_RELEASED)

    def _peer_abort(self, indication: Aborted) -> None:
        if indication.by_peer:
            source = "A-ABORT" if indication.source == AbortSource.SERVICE_USER else "A-P-ABORT"
            LOGGER.info(f"Association Aborted ({source} from the peer)")
        elif indication.transport_closed:
            LOGGER.error("The peer closed the connection before the association was released")
        else:
            LOGGER.error(f"Association Aborted by the provider: {indication.reason.name}")
        self._mark_aborted()

    def _mark_aborted(self) -> None:
        self.is_established = False
        if not self.is_aborted and not self.is_released:
            self.is_aborted = True
            self.notify(evt.EVT_ABORTED)

    def _closed(self) -> None:
        if self.link is not None:
            self.link.close()
        if self._assembler.in_progress:
            self._assembler.abandon()
        self.ready_file.stop()
        if not self._close_notified:
            self._close_notified = True
            self.is_established = False
            self.notify(evt.EVT_CONN_CLOSE, address=(self.peer.address, self.peer.port))
            self.ae.forget(self)
