"""What a job asks for, as its queue row keeps it: a copy with its morphs, or a prefetch and how far it got.

A job is either a delivery (`JobKind.STORE`: a copy of the instance to a
destination, changed by the morphs of the rule that forwarded it) or a
prefetch (`JobKind.PREFETCH`: C-FIND the source for the patient's other
studies, then C-MOVE the most recent ones). A `Lane` (destination, kind) is
the line of jobs one runner works through; a prefetch runs in its source
destination's lane of prefetches, so it never waits behind that
destination's deliveries, nor they behind it.

Orders are stored as JSON text in the job's row (`spec`), so a job keeps the
decision it was made with when the rules change. The text of an order is
canonical (sorted keys, no spaces): two identical orders for one instance are
one job, two different ones are two. A prefetch's `PrefetchProgress` (the
studies it chose and those already moved) is kept in the row too, so a retry
moves only the studies that failed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, NamedTuple

from rules.decision import Morph, MorphKind, Prefetch


class JobKind(str, Enum):
    STORE = "store"  # C-STORE (or a folder copy) of the instance
    PREFETCH = "prefetch"  # C-FIND + C-MOVE of the patient's prior studies


class Lane(NamedTuple):
    """The jobs of one kind for one destination: what one runner works through."""

    destination: str
    kind: JobKind = JobKind.STORE

    @property
    def label(self) -> str:
        """How the operator commands name the lane: 'pacs', or 'pacs (prefetch)'."""
        return self.destination if self.kind is JobKind.STORE else f"{self.destination} ({self.kind.value})"


@dataclass(frozen=True)
class PrefetchOrder:
    """A prefetch as the rules decided it, and the study of the instance that fired it (left out)."""

    prefetch: Prefetch
    study_uid: str


@dataclass(frozen=True)
class PrefetchProgress:
    """How far a prefetch got: the studies its C-FIND chose (None: no C-FIND yet), those moved, how many it found."""

    chosen: tuple[str, ...] | None = None
    moved: tuple[str, ...] = ()
    found: int = 0

    @property
    def remaining(self) -> tuple[str, ...]:
        return tuple(uid for uid in self.chosen or () if uid not in self.moved)


def canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def morphs_text(morphs: tuple[Morph, ...]) -> str:
    """The stored form of a copy's morphs ('' for none: the spooled bytes as they are)."""
    return canonical([{**asdict(morph), "kind": morph.kind.value} for morph in morphs]) if morphs else ""


def morphs_of(text: str) -> tuple[Morph, ...]:
    return tuple(Morph(**{**item, "kind": MorphKind(item["kind"])}) for item in json.loads(text)) if text else ()


def order_text(order: PrefetchOrder) -> str:
    return canonical({"prefetch": asdict(order.prefetch), "study_uid": order.study_uid})


def order_of(text: str) -> PrefetchOrder:
    data = json.loads(text)
    fields = data["prefetch"]
    match = tuple((str(key), str(value)) for key, value in fields["match"])
    return PrefetchOrder(Prefetch(**{**fields, "match": match}), data["study_uid"])


def progress_text(progress: PrefetchProgress) -> str:
    return canonical(asdict(progress))


def progress_of(text: str) -> PrefetchProgress:
    if not text:
        return PrefetchProgress()
    data = json.loads(text)
    chosen = data["chosen"]
    return PrefetchProgress(None if chosen is None else tuple(chosen), tuple(data["moved"]), data["found"])
