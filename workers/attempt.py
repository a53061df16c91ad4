"""One delivery attempt: what it takes (a `Parcel`) and what it came to (an `Outcome`).

A `Parcel` is a spool file with what the queue knows of it and the morphs of
the copy to send; its `Need` is what a DICOM association must offer to carry
it. A copy with morphs is the spool file's data set read whole, changed by
`rules.morph.apply_morphs` (`morphed_copy`): the spool file itself never
changes.

`Outcome.kind` decides what the queue does: a delivered job is counted and
forgotten, a transient failure is retried after a back-off (until the
destination's attempts run out), a permanent one goes to the dead letters at
once. `destination_down` marks failures of the destination as a whole (no
connection, association refused or lost), after which the worker holds back
the destination's other jobs for the back-off instead of failing them too.
A prefetch's outcome carries its progress, which its next attempt resumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from rules.decision import Morph
from rules.morph import MorphError, apply_morphs
from workers.jobs import PrefetchProgress


@dataclass(frozen=True)
class Need:
    """What an instance needs from an association: its SOP class in its transfer syntax."""

    sop_class_uid: str
    transfer_syntax: str


@dataclass(frozen=True)
class Parcel:
    """An instance to send: its spool file, what the queue knows of it, and the morphs of this copy."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    morphs: tuple[Morph, ...] = ()

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
    progress: PrefetchProgress | None = None  # how far a prefetch got, kept in its job for the next attempt


DELIVERED = Outcome(OutcomeKind.DELIVERED)


def transient(reason: str, destination_down: bool = False) -> Outcome:
    return Outcome(OutcomeKind.TRANSIENT, reason, destination_down)


def permanent(reason: str) -> Outcome:
    return Outcome(OutcomeKind.PERMANENT, reason)


class HoldsNothingOpen:
    """The idle and close calls of a runner's sender, for a sender with nothing to keep open between attempts."""

    def idle_deadline(self) -> float | None:
        return None

    def release_if_idle(self, now: float) -> None:
        """Nothing is held open."""

    def close(self) -> None:
        """Nothing is held open."""


def morphed_copy(parcel: Parcel) -> Dataset | Outcome:
    """The parcel's data set (file meta included) with its morphs applied, or the permanent failure why not."""
    try:
        dataset = pydicom.dcmread(parcel.path)
    except FileNotFoundError:
        return permanent(f"the spool file {parcel.path.name} is gone")
    except Exception as exc:  # noqa: BLE001 - pydicom reports a bad file with many exception types
        return permanent(f"cannot read the spool file {parcel.path.name}: {exc}")
    try:
        apply_morphs(dataset, parcel.morphs)
    except MorphError as exc:
        return permanent(f"morph failed: {exc}")
    return dataset
