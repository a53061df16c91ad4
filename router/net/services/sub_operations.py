"""The C-STORE sub-operations of a C-GET or C-MOVE: what a handler yields, and sending it.

`instance_of` turns a handler's Dataset or file path into an `Instance` (a
path is opened as a streamed source, never read whole), and an `Unsendable`
(an instance the handler knows it cannot send, and why) into a failed one; `Answers` reads the
handler's `(status, instance)` answers with a bounded read-ahead window;
`store` sends one instance with C-STORE on an association; `Destination` is
a C-MOVE's own association(s) to its move destination, proposing the
(SOP class, transfer syntax) pairs of the instances at hand and read ahead, so
compressed data passes through untouched.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian

from router.net import evt
from router.net.acse import MAX_CONTEXTS
from router.net.datasets import encode_dataset
from router.net.presentation import PresentationContext, pass_through_contexts, sendable_syntaxes, uid_name
from router.net.sources import DatasetSource, source_for
from router.net.status import StatusClass, classify, status_of

if TYPE_CHECKING:
    from router.net.ae import AE
    from router.net.association import Association

LOGGER = logging.getLogger("router.net")
MAX_WANTS = MAX_CONTEXTS // 2  # each may take two contexts: its own syntax, and the others
READ_AHEAD = 512  # instances a C-MOVE reads ahead to choose the destination's contexts

Want = tuple[str, tuple[str, ...]]  # (SOP class, transfer syntaxes): a context to propose


@dataclass(frozen=True)
class Unsendable:
    """What a C-GET/C-MOVE handler yields for an instance it cannot send: its sub-operation fails
    with `reason` logged, and its UID is in the final Failed SOP Instance UID List."""

    sop_instance_uid: str
    reason: str


@dataclass
class Instance:
    """One instance a handler yielded, ready for its C-STORE sub-operation."""

    payload: Dataset | DatasetSource | None  # a path is opened as a source: meta read, data streamed later
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    syntaxes: tuple[str, ...] = ()  # what it may be sent in, best first
    error: str = ""  # why it cannot be sent

    @property
    def want(self) -> Want:
        return self.sop_class_uid, self.syntaxes

    @property
    def in_memory(self) -> bool:
        return isinstance(self.payload, Dataset) or getattr(self.payload, "data", None) is not None


def instance_of(payload: Any) -> Instance:
    """The instance a handler's Dataset, path or Unsendable stands for; `error` says why it cannot be sent."""
    if isinstance(payload, Unsendable):
        uid = payload.sop_instance_uid
        return Instance(None, sop_instance_uid=uid, error=f"cannot send {uid}: {payload.reason}")
    try:
        if isinstance(payload, Dataset):
            own = str(getattr(getattr(payload, "file_meta", None), "TransferSyntaxUID", None) or ImplicitVRLittleEndian)
            return Instance(payload, str(payload.SOPClassUID), str(payload.SOPInstanceUID), sendable_syntaxes(own))
        source = source_for(payload)
        return Instance(source, source.sop_class_uid, source.sop_instance_uid, sendable_syntaxes(source.transfer_syntax))
    except Exception as exc:  # a missing file, a data set without its SOP class UID, None
        uid = str(getattr(payload, "SOPInstanceUID", ""))
        what = uid or ("a Dataset" if isinstance(payload, Dataset) else repr(payload))
        return Instance(None, sop_instance_uid=uid, error=f"cannot send {what}: {exc}")


def _in_syntax(instance: Instance, syntax: str) -> DatasetSource:
    """The instance encoded in `syntax`: a file in another one is read and encoded anew (uncompressed only)."""
    source = instance.payload
    if isinstance(source, DatasetSource) and source.transfer_syntax == syntax:
        return source  # a file sent as it is, streamed
    dataset = source if isinstance(source, Dataset) else dcmread(source.path)  # type: ignore[union-attr]
    data = encode_dataset(dataset, syntax)
    return DatasetSource(instance.sop_class_uid, instance.sop_instance_uid, syntax, len(data), data=data)


def store(assoc: "Association", instance: Instance, priority: int, originator: tuple[str, int] | None = None) -> int | None:
    """C-STORE `instance` on `assoc`: the response's status, None if it was not sent or not answered."""
    try:
        syntax = next((syntax for syntax in instance.syntaxes if _accepts(assoc, instance.sop_class_uid, syntax)), None)
        if syntax is None:
            offered = " or ".join(uid_name(syntax) for syntax in instance.syntaxes)
            LOGGER.error(
                "Sub-operation failed: no accepted context for '%s' in %s, with us as SCU (%s)",
                uid_name(instance.sop_class_uid), offered, instance.sop_instance_uid,
            )
            return None
        source = _in_syntax(instance, syntax)
        aet, message_id = originator or (None, None)
        status = assoc.send_c_store(source, None, priority, aet, message_id)  # None: the association's next ID
    except Exception as exc:  # the file went away, the association ended: this sub-operation failed
        LOGGER.error("Sub-operation for %s failed: %s", instance.sop_instance_uid, exc)
        return None
    return int(status.Status) if "Status" in status else None


def _accepts(assoc: "Association", sop_class_uid: str, syntax: str) -> bool:
    try:
        assoc.find_context(sop_class_uid, as_scu=True, transfer_syntax=syntax)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Answer:
    """A `(status, instance)` the handler yielded after its count; no instance for a final status."""

    status: int
    instance: Instance | None = None

    @property
    def in_memory(self) -> bool:
        return self.instance is not None and self.instance.in_memory


class Answers:
    """The handler's answers after its count, at most `count`, with a read-ahead window.

    An exception in the handler becomes a final `failure` answer, after those read before it.
    """

    def __init__(self, handler: Iterator, count: int, failure: int, event: evt.EventType) -> None:
        self._handler = handler
        self._left = count
        self._failure = failure  # the status of a handler that raised
        self._event = event
        self._buffer: deque[Answer] = deque()
        self._ended = False

    def __iter__(self) -> Iterator[Answer]:
        while True:
            answer = self._buffer.popleft() if self._buffer else self._read()
            if answer is None:
                return
            yield answer

    def upcoming(self) -> list[Instance]:
        """The instances read ahead, reading on to READ_AHEAD but past no more than one held in memory."""
        while len(self._buffer) < READ_AHEAD and not (self._buffer and self._buffer[-1].in_memory):
            answer = self._read()
            if answer is None:
                break
            self._buffer.append(answer)
        return [answer.instance for answer in self._buffer if answer.instance is not None]

    def _read(self) -> Answer | None:
        if self._ended or self._left <= 0:
            return None
        try:
            status, payload = next(self._handler)
            code = status_of(status, self._failure)
        except StopIteration:
            self._ended = True
            return None
        except Exception:
            LOGGER.exception("Exception in the handler bound to '%s'", self._event.name)
            self._ended = True
            return Answer(self._failure)
        if classify(code) is not StatusClass.PENDING:
            self._ended = True
            return Answer(code)
        self._left -= 1
        return Answer(code, instance_of(payload))


class Destination:
    """Where a C-MOVE stores its instances: an association opened for the first instance and
    opened again for one it offered no context for, proposing what the instances read ahead need.

    Up to MAX_CONTEXTS (SOP class, syntaxes) pairs are proposed, the instance at hand and those
    read ahead first, then those met before, then the AE's requested contexts if room is left.
    """

    def __init__(self, ae: "AE", address: str, port: int, options: dict, originator: tuple[str, int], priority: int):
        self.ae = ae
        self.address, self.port = address, port
        self.options = options  # AE.associate keyword arguments: ae_title, and the handler's own
        self.originator = originator  # Move Originator AE title and message ID
        self.priority = priority
        self.current: Association | None = None
        self.proposed: set[Want] = set()
        self.met: dict[Want, None] = {}  # every pair met so far, in order
        self.unreachable = False

    def send(self, instance: Instance, answers: Answers) -> int | None:
        """C-STORE `instance` at the destination: its status, None if it could not be sent."""
        assoc = self._association_for(instance, answers)
        if assoc is None:  # why was logged when the association failed
            LOGGER.debug("Sub-operation for %s failed: no association with the move destination", instance.sop_instance_uid)
            return None
        return store(assoc, instance, self.priority, self.originator)

    def release(self) -> None:
        if self.current is not None:
            self.current.release()
            self.current = None

    def _association_for(self, instance: Instance, answers: Answers) -> "Association | None":
        current = self.current
        if current is not None and current.is_established and self._covers(current, instance):
            return current
        if self.unreachable:
            return None
        fresh = [instance.want, *(other.want for other in answers.upcoming() if not other.error)]
        wants = list(dict.fromkeys([*fresh, *self.met]))[:MAX_WANTS]
        self.met.update(dict.fromkeys(fresh))
        self.release()
        try:
            assoc = self.ae.associate(self.address, self.port, **{"contexts": self._contexts(wants), **self.options})
        except Exception:  # e.g. a bad keyword argument from the handler
            LOGGER.exception("Unable to request an association with the move destination")
            assoc = None
        if assoc is None or not assoc.is_established:
            LOGGER.error(
                "Unable to associate with the move destination %s at %s:%s",
                self.options.get("ae_title"), self.address, self.port,
            )
            self.unreachable = True
            return None
        self.current, self.proposed = assoc, set(wants)
        return assoc

    def _covers(self, assoc: "Association", instance: Instance) -> bool:
        """True if `assoc` takes the instance, or already refused all it was offered for it."""
        if "contexts" in self.options or instance.want in self.proposed:
            return True
        return any(_accepts(assoc, instance.sop_class_uid, syntax) for syntax in instance.syntaxes)

    def _contexts(self, wants: list[Want]) -> list[PresentationContext]:
        contexts = [context for sop_class_uid, syntaxes in wants for context in pass_through_contexts(sop_class_uid, syntaxes)]
        ours = {(context.abstract_syntax, tuple(context.transfer_syntax)) for context in contexts}
        extra = [c for c in self.ae.requested_contexts if (c.abstract_syntax, tuple(c.transfer_syntax)) not in ours]
        return contexts + extra[: MAX_CONTEXTS - len(contexts)]
