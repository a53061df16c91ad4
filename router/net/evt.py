"""Events users bind handlers to: the EVT_* types, the `Event` passed to handlers, the registry.

Notification events (EVT_CONN_OPEN, EVT_ACCEPTED, ...) may have many handlers
and their return values are ignored. Intervention events (EVT_C_ECHO,
EVT_USER_ID, ...) have exactly one handler, a default one unless the user binds
their own, and its return value is the answer. Handlers are bound as
`(evt, fn)` or `(evt, fn, [args])`; extra args follow the event argument.
"""

from __future__ import annotations

import logging
import time
from io import BytesIO
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag

from router.net.datasets import decode_dataset

LOGGER = logging.getLogger("router.net")


@dataclass(frozen=True, eq=False)
class EventType:
    """One kind of event; `is_intervention` says whether its single handler answers it.

    Each event type is a single instance compared by identity, which also makes
    it cheap to hash: the registry looks events up on every message.
    """

    name: str
    description: str
    is_intervention: bool = False

    @property
    def is_notification(self) -> bool:
        return not self.is_intervention

    def __str__(self) -> str:
        return self.name


def _notification(name: str, description: str) -> EventType:
    return EventType(name, description, is_intervention=False)


def _intervention(name: str, description: str) -> EventType:
    return EventType(name, description, is_intervention=True)


EVT_CONN_OPEN = _notification("EVT_CONN_OPEN", "Connection with remote opened")
EVT_CONN_CLOSE = _notification("EVT_CONN_CLOSE", "Connection with remote closed")
EVT_REQUESTED = _notification("EVT_REQUESTED", "Association requested")
EVT_ACCEPTED = _notification("EVT_ACCEPTED", "Association request accepted")
EVT_REJECTED = _notification("EVT_REJECTED", "Association request rejected")
EVT_ESTABLISHED = _notification("EVT_ESTABLISHED", "Association established")
EVT_RELEASED = _notification("EVT_RELEASED", "Association released")
EVT_ABORTED = _notification("EVT_ABORTED", "Association aborted")
EVT_PDU_RECV = _notification("EVT_PDU_RECV", "PDU received")
EVT_PDU_SENT = _notification("EVT_PDU_SENT", "PDU sent")
EVT_DIMSE_RECV = _notification("EVT_DIMSE_RECV", "DIMSE message received")
EVT_DIMSE_SENT = _notification("EVT_DIMSE_SENT", "DIMSE message sent")
EVT_ACSE_RECV = _notification("EVT_ACSE_RECV", "ACSE primitive received")
EVT_ACSE_SENT = _notification("EVT_ACSE_SENT", "ACSE primitive sent")
EVT_DATA_RECV = _notification("EVT_DATA_RECV", "Data received from remote")
EVT_DATA_SENT = _notification("EVT_DATA_SENT", "Data sent to remote")
EVT_FSM_TRANSITION = _notification("EVT_FSM_TRANSITION", "State machine transitioning")

EVT_C_ECHO = _intervention("EVT_C_ECHO", "C-ECHO request received")
EVT_C_STORE = _intervention("EVT_C_STORE", "C-STORE request received")
EVT_C_FIND = _intervention("EVT_C_FIND", "C-FIND request received")
EVT_C_GET = _intervention("EVT_C_GET", "C-GET request received")
EVT_C_MOVE = _intervention("EVT_C_MOVE", "C-MOVE request received")
EVT_N_EVENT_REPORT = _intervention("EVT_N_EVENT_REPORT", "N-EVENT-REPORT request received")
EVT_N_GET = _intervention("EVT_N_GET", "N-GET request received")
EVT_N_SET = _intervention("EVT_N_SET", "N-SET request received")
EVT_N_ACTION = _intervention("EVT_N_ACTION", "N-ACTION request received")
EVT_N_CREATE = _intervention("EVT_N_CREATE", "N-CREATE request received")
EVT_N_DELETE = _intervention("EVT_N_DELETE", "N-DELETE request received")
EVT_USER_ID = _intervention("EVT_USER_ID", "User identity negotiation requested")
EVT_SOP_EXTENDED = _intervention("EVT_SOP_EXTENDED", "SOP class extended negotiation requested")
EVT_SOP_COMMON = _intervention("EVT_SOP_COMMON", "SOP class common extended negotiation requested")
EVT_ASYNC_OPS = _intervention("EVT_ASYNC_OPS", "Asynchronous operations negotiation requested")

NOTIFICATION_EVENTS = [value for value in list(globals().values()) if isinstance(value, EventType) and not value.is_intervention]
INTERVENTION_EVENTS = [value for value in list(globals().values()) if isinstance(value, EventType) and value.is_intervention]


class Event:
    """What a handler receives: the association, the event type, when, and event attributes."""

    def __init__(self, assoc: Any, event: EventType, **attributes: Any) -> None:
        self.assoc = assoc
        self.event = event
        self.timestamp = time.time()
        self.__dict__.update(attributes)

    @property
    def description(self) -> str:
        return self.event.description

    @property
    def is_cancelled(self) -> bool:
        """True once the peer sent a C-CANCEL for the request this event serves."""
        check = self.__dict__.get("cancel_check")
        return bool(check and check())

    # ---- a received data set (EVT_C_STORE) --------------------------------
    @property
    def file_meta(self) -> Any:
        """The File Meta Information of the received instance: decoded from the file header alone
        (the data set, however large, is not read), or the decoded data set's own."""
        if "_decoded" in self.__dict__:
            return self._decoded.file_meta
        if "_file_meta" not in self.__dict__:
            self._file_meta = dcmread(BytesIO(self.received.file_header)).file_meta
        return self._file_meta

    @property
    def dataset(self) -> Any:
        """The received instance, decoded on first use (with its `file_meta`)."""
        if "_decoded" not in self.__dict__:
            received = self.received
            source = received.path if received.path is not None else BytesIO(received.encoded(include_meta=True))
            self._decoded = dcmread(source)
            if "_file_meta" in self.__dict__:
                self._decoded.file_meta = self._file_meta  # the one the handler already holds
        return self._decoded

    def encoded_dataset(self, include_meta: bool = True) -> bytes:
        """The instance as received, not re-encoded; with preamble and file meta if `include_meta`."""
        return self.received.encoded(include_meta)

    def save_as(self, path: Any) -> None:
        """Store the instance as a Part 10 file at `path`, bit for bit as received."""
        self.received.save_as(path)

    # ---- a DIMSE-N request (EVT_N_*) ----------------------------------------
    @property
    def attribute_list(self) -> Dataset:
        """N-CREATE's Attribute List or N-SET's Modification List, decoded on first use (empty if none came)."""
        return self._request_data_set()

    modification_list = attribute_list  # pynetdicom's name for N-SET's

    @property
    def action_information(self) -> Dataset:
        """N-ACTION's Action Information, decoded on first use (empty if none came)."""
        return self._request_data_set()

    @property
    def event_information(self) -> Dataset:
        """N-EVENT-REPORT's Event Information, decoded on first use (empty if none came)."""
        return self._request_data_set()

    @property
    def action_type(self) -> int:
        """N-ACTION's Action Type ID."""
        return self.request.action_type_id

    @property
    def event_type(self) -> int:
        """N-EVENT-REPORT's Event Type ID."""
        return self.request.event_type_id

    @property
    def attribute_identifiers(self) -> list[BaseTag]:
        """N-GET's Attribute Identifier List as pydicom tags (empty: every attribute)."""
        return [Tag(tag) for tag in self.request.attribute_identifier_list]

    def after_response(self, call: Callable[[], Any]) -> None:
        """Run `call()` on the association's thread once the response to this request is sent (EVT_N_*).

        How a Storage Commitment SCP reports on the association of its N-ACTION:
        `event.after_response(lambda: event.assoc.send_n_event_report(...))`.
        """
        self._followups.append(call)

    def _request_data_set(self) -> Dataset:
        if "_decoded_data" not in self.__dict__:
            data = self._data
            self._decoded_data = decode_dataset(data, self.context.transfer_syntax[0]) if data else Dataset()
        return self._decoded_data

    def __repr__(self) -> str:
        return f"<Event {self.event.name}>"


Handler = Callable[..., Any]
HandlerSpec = tuple  # (EventType, fn) or (EventType, fn, args)


class HandlerRegistry:
    """The handlers bound to each event, for one association or one server."""

    def __init__(self, specs: Iterable[HandlerSpec] | None = None) -> None:
        self._handlers: dict[EventType, list[tuple[Handler, Sequence]]] = {}
        # The events with a handler, a live view: hot paths test it before building an event for nobody.
        self.bound_events = self._handlers.keys()
        for spec in specs or ():
            self.bind(*spec)

    def bind(self, event: EventType, handler: Handler, args: Sequence | None = None) -> None:
        """Bind `handler` to `event`; an intervention event keeps only its latest handler."""
        if not isinstance(event, EventType):
            raise ValueError(f"'{event}' is not an event type from router.net.evt")
        entry = (handler, list(args or ()))
        if event.is_intervention:
            self._handlers[event] = [entry]
            return
        bound = self._handlers.setdefault(event, [])
        if all(existing is not handler for existing, _ in bound):
            bound.append(entry)

    def unbind(self, event: EventType, handler: Handler) -> None:
        """Remove `handler` from `event`; unbinding an intervention restores its default."""
        bound = self._handlers.get(event, [])
        remaining = [entry for entry in bound if entry[0] is not handler]
        if remaining:
            self._handlers[event] = remaining
        else:
            self._handlers.pop(event, None)

    def handlers(self, event: EventType) -> list[tuple[Handler, Sequence]]:
        """The (handler, args) pairs bound to `event`."""
        return list(self._handlers.get(event, ()))

    def specs(self) -> list[HandlerSpec]:
        """Every binding as an `evt_handlers` entry, to copy the registry."""
        return [(event, handler, args) for event, bound in self._handlers.items() for handler, args in bound]

    def is_bound(self, event: EventType) -> bool:
        return event in self._handlers

    def notify(self, assoc: Any, event: EventType, **attributes: Any) -> None:
        """Call every handler of a notification event; a failing handler is logged, not raised."""
        bound = self._handlers.get(event)
        if not bound:
            return
        item = Event(assoc, event, **attributes)
        for handler, args in list(bound):
            try:
                handler(item, *args)
            except Exception:  # a user's handler must never break the association
                LOGGER.exception(f"Exception in handler bound to '{event.name}'")

    def intervene(self, assoc: Any, event: EventType, default: Handler, **attributes: Any) -> Any:
        """Call the intervention handler (or `default`) and return its answer; errors propagate."""
        bound = self._handlers.get(event)
        item = Event(assoc, event, **attributes)
        if not bound:
            return default(item)
        handler, args = bound[0]
        return handler(item, *args)
