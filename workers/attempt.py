"""One delivery attempt: what it takes (a `Parcel`) and what it came to (an `Outcome`).

A `Parcel` is a spool file with what the queue knows of it; its `Need` is
what a DICOM association must offer to carry it. `Outcome.kind` decides what
the queue does: a delivered job is counted and forgotten, a transient failure
is retried after a back-off (until the destination's attempts run out), a
permanent one goes to the dead letters at once. `destination_down` marks failures of the destination as a whole (no
connection, association refused or lost), after which the worker holds back
the destination's other jobs for the back-off instead of failing them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path


@dataclass(frozen=True)
class Need:
    """What an instance needs from an association: its SOP class in its transfer syntax."""

    sop_class_uid: str
    transfer_syntax: str


@dataclass(frozen=True)
class Parcel:
    """An instance to send: its spool file and what the queue knows of it."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str

    @property
    def need(self) -> Need:
        return Need(self.sop_class_uid, self.transfer_syntax)


class OutcomeKind(Enum):
    DELIVERED = "delivered"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    reason: str = ""
    destination_down: bool = False


DELIVERED = Outcome(OutcomeKind.DELIVERED)


def transient(reason: str, destination_down: bool = False) -> Outcome:
    return Outcome(OutcomeKind.TRANSIENT, reason, destination_down)


def permanent(reason: str) -> Outcome:
    return Outcome(OutcomeKind.PERMANENT, reason)
