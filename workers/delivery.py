"""Delivery to a DICOM destination: C-STORE over an association that is kept open and reused.

A `DicomSender` belongs to one delivery thread and holds at most one
association to its destination (a destination gets `max_associations`
threads). An instance needs a context for its SOP class in its own transfer
syntax; `proposals` asks for that syntax first (a context of its own), with
the uncompressed ones as fall-backs when the data set can be re-encoded (a
compressed one never is). When the open association never proposed what an
instance needs, it is released and a new one proposes the instance's need
first and then the destination's most recent other needs (`RecentNeeds`),
up to 128 contexts. A refusal closes the association, so the next attempt
negotiates afresh with a destination that may have been set up since.

A file goes out as it is, streamed, when its own syntax was accepted; an
uncompressed data set whose syntax was refused is re-encoded (pydicom) into
the uncompressed syntax the destination took. A copy with morphs is read
whole, morphed and encoded in its own syntax (compressed pixel data passes
through as its encapsulated bytes), or in the uncompressed fall-back. A morph
that cannot be applied is a permanent failure with its reason. What comes back becomes an
`Outcome`: Success and Warning deliver; out of resources (0xA7xx), resource
limitation, processing failure, no response, no connection and a rejected
association are transient; a refused SOP class or syntax, 0xA9xx, 0xCxxx
and the other failures are permanent.

A permanent rejection of the association (e.g. 'calling AE title not
recognized') is treated as transient: it concerns the destination's set-up,
not the instance, so every job of the destination would fail alike, and the
set-up is usually fixed by its administrator while the jobs wait out their
back-off; jobs that run out of attempts still end dead with the reason.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field


from router.config import DicomDestination
from router.net import AE
from router.net.acse import MAX_CONTEXTS
from router.net.association import Association
from router.net.datasets import encode_dataset
from router.net.log import reject_text
from router.net.presentation import PresentationContext, pass_through_contexts, sendable_syntaxes, uid_name
from router.net.services.storage import c_store_response
from router.net.sources import DatasetSource, source_for
from router.net.status import OUT_OF_RESOURCES, PROCESSING_FAILURE, RESOURCE_LIMITATION, Service, StatusClass
from router.net.status import classify, describe
from workers.attempt import DELIVERED, Need, Outcome, Parcel, morphed_copy, permanent, transient

IDLE_RELEASE = 10.0  # seconds an unused association stays open
READ_WHOLE_BELOW = 256 << 10  # a smaller spool file is read at once (one open), a larger one streamed
ACSE_TIMEOUT = 30.0
DIMSE_TIMEOUT = 60.0  # waiting for a C-STORE response once the data set is sent
NETWORK_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0
STATUS_RANGE_MASK = 0xFF00  # a Storage range such as 0xA7xx is named by its first code
TRANSIENT_STATUSES = frozenset({RESOURCE_LIMITATION, PROCESSING_FAILURE})


def proposals(need: Need) -> list[PresentationContext]:
    """The contexts to propose for `need`: its own syntax alone, then the fall-backs it can use."""
    return pass_through_contexts(need.sop_class_uid, sendable_syntaxes(need.transfer_syntax))


def status_outcome(status: int, comment: str = "") -> Outcome:
    """The outcome of a C-STORE response's status."""
    kind = classify(status)
    if kind in (StatusClass.SUCCESS, StatusClass.WARNING):
        return DELIVERED
    reason = describe(status, Service.STORAGE) + (f" ({comment})" if comment else "")
    out_of_resources = status & STATUS_RANGE_MASK == OUT_OF_RESOURCES
    if out_of_resources or status in TRANSIENT_STATUSES or kind is StatusClass.CANCEL:
        return transient(reason)
    return permanent(reason)


class RecentNeeds:
    """The needs a destination saw lately, newest last, shared by its threads (thread-safe)."""

    def __init__(self, limit: int = MAX_CONTEXTS) -> None:
        self._needs: OrderedDict[Need, None] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def contexts_for(self, need: Need) -> tuple[list[PresentationContext], set[Need]]:
        """Contexts for `need`, then for the other recent needs while they fit; and the needs covered."""
        with self._lock:
            self._needs[need] = None
            self._needs.move_to_end(need)
            while len(self._needs) > self._limit:
                self._needs.popitem(last=False)
            ordered = [need, *(other for other in reversed(self._needs) if other != need)]
        contexts: list[PresentationContext] = []
        covered: set[Need] = set()
        for candidate in ordered:
            wanted = proposals(candidate)
            if len(contexts) + len(wanted) > MAX_CONTEXTS:
                break
            contexts.extend(wanted)
            covered.add(candidate)
        return contexts, covered


@dataclass
class OpenAssociation:
    assoc: Association
    proposed: set[Need]
    last_used: float = field(default_factory=time.monotonic)


class DicomSender:
    """Sends instances to one DICOM destination over one reused association (one thread's)."""

    def __init__(self, destination: DicomDestination, ae: AE, recent: RecentNeeds, max_pdu: int) -> None:
        self.destination = destination
        self.ae = ae
        self.recent = recent
        self.max_pdu = max_pdu
        self.current: OpenAssociation | None = None

    def send(self, parcel: Parcel) -> Outcome:
        """C-STORE the parcel's Part 10 file; a stale reused association is replaced once."""
        if not parcel.sop_class_uid or not parcel.transfer_syntax:
            return permanent(f"the spool file {parcel.path.name} names no SOP class or transfer syntax")
        try:
            reused = self._usable(parcel.need)
            outcome = self._send(parcel)
            if reused and outcome.destination_down and self.current is None:
                outcome = self._send(parcel)
        except BaseException:
            self.abort()  # whatever state the association was left in, it is not reused
            raise
        return outcome

    def idle_deadline(self) -> float | None:
        """When the open association is released if unused (monotonic time), or None."""
        return None if self.current is None else self.current.last_used + IDLE_RELEASE

    def release_if_idle(self, now: float) -> None:
        deadline = self.idle_deadline()
        if deadline is not None and deadline <= now:
            self.close()

    def close(self) -> None:
        """Release the open association, if any."""
        if self.current is not None:
            current, self.current = self.current, None
            current.assoc.release()

    def abort(self) -> None:
        """Abort the open association, if any."""
        if self.current is not None:
            current, self.current = self.current, None
            current.assoc.abort()

    # ---- one attempt -----------------------------------------------------------------------------
    def _usable(self, need: Need) -> bool:
        """True when the open association is alive and proposed `need`; otherwise close it."""
        current = self.current
        if current is None:
            return False
        current.assoc.poll_incoming()  # an abort or a release the peer sent while we were idle
        if current.assoc.is_established and need in current.proposed:
            return True
        self.close()
        return False

    def _send(self, parcel: Parcel) -> Outcome:
        if not self._usable(parcel.need):
            refused = self._open(parcel.need)
            if refused is not None:
                return refused
        assert self.current is not None
        assoc = self.current.assoc
        source = self._source(parcel, assoc)
        if isinstance(source, Outcome):
            self.close()  # the next attempt negotiates afresh: the destination may have been set up since
            return source
        response = c_store_response(assoc, source)
        self.current.last_used = time.monotonic()
        if response is None:
            self.close()
            return transient("no response to the C-STORE (timeout or association lost)", destination_down=True)
        return status_outcome(response.status, response.error_comment)

    def _open(self, need: Need) -> Outcome | None:
        """Open an association proposing `need` first; the outcome if that failed, else None."""
        contexts, covered = self.recent.contexts_for(need)
        address = self.destination.address
        assoc = self.ae.associate(
            address.host, address.port, contexts=contexts, ae_title=self.destination.ae_title, max_pdu=self.max_pdu
        )
        if assoc.is_established:
            self.current = OpenAssociation(assoc, covered)
            return None
        if assoc.is_rejected:
            return transient(f"association rejected ({reject_text(assoc.reject_reason)})", destination_down=True)
        if assoc.rejected_contexts and not assoc.accepted_contexts:
            return permanent(refusal(need, assoc))
        return transient(f"cannot associate with {address} (no connection, or aborted)", destination_down=True)

    def _source(self, parcel: Parcel, assoc: Association) -> DatasetSource | Outcome:
        """What to send: the file as it is, or its data set (morphed) encoded in a syntax the destination took."""
        need, path = parcel.need, parcel.path
        accepted = {
            context.transfer_syntax[0]
            for context in assoc.accepted_contexts
            if context.abstract_syntax == need.sop_class_uid and context.as_scu
        }
        if need.transfer_syntax in accepted and not parcel.morphs:
            try:
                return source_for(path, READ_WHOLE_BELOW)
            except FileNotFoundError:
                return permanent(f"the spool file {path.name} is gone")
            except (OSError, ValueError) as exc:
                return permanent(f"cannot read the spool file {path.name}: {exc}")
        if need.transfer_syntax in accepted:
            return encoded(parcel, need.transfer_syntax)
        target = next((syntax for syntax in sendable_syntaxes(need.transfer_syntax)[1:] if syntax in accepted), None)
        if target is None:
            return permanent(refusal(need, assoc))
        return encoded(parcel, target)


def encoded(parcel: Parcel, syntax: str) -> DatasetSource | Outcome:
    """The parcel's data set, its morphs applied, encoded in `syntax` (read whole; encapsulated pixel data passes as is)."""
    dataset = morphed_copy(parcel)
    if isinstance(dataset, Outcome):
        return dataset
    try:
        data = encode_dataset(dataset, syntax)
    except Exception as exc:  # noqa: BLE001 - pydicom reports a bad data set with many exception types
        return permanent(f"cannot encode {parcel.path.name} in {uid_name(syntax)}: {exc}")
    return DatasetSource(str(dataset.SOPClassUID), str(dataset.SOPInstanceUID), syntax, len(data), data=data)


def refusal(need: Need, assoc: Association) -> str:
    """Why the destination cannot take `need`, from its answers to our proposals."""
    answers = sorted(
        {context.status for context in assoc.rejected_contexts if context.abstract_syntax == need.sop_class_uid}
    )
    accepted = sorted(
        {uid_name(context.transfer_syntax[0]) for context in assoc.accepted_contexts if context.abstract_syntax == need.sop_class_uid}
    )
    if accepted:
        detail = f"accepted only in {', '.join(accepted)}"
    else:
        detail = ", ".join(answers) or "not accepted"
    return f"the destination refuses {uid_name(need.sop_class_uid)} in {uid_name(need.transfer_syntax)}: {detail}"
