"""What the rules decide for one instance: the contract between the rules language and the workers.

`Decision` lists the copies to forward (each to one destination, with the
morphs that rule asked for), the prefetches to run, and which rules matched.
It is plain data, frozen and serialisable (`to_dict`/`from_dict`, for the
delivery queue), so a job keeps the decision it was made with even after the
rules are reloaded. How morphs change a data set lives in `rules.morph`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class MorphKind(str, Enum):
    SET = "set"  # set `tag` to `value` (created if absent)
    DELETE = "delete"  # remove `tag` if present
    COPY = "copy"  # copy the value of `source` into `tag`
    REPLACE = "replace"  # regex `pattern` in `tag`'s value replaced by `value`


@dataclass(frozen=True)
class Morph:
    """One change to the forwarded copy; `tag` is a keyword or '(gggg,eeee)' as written."""

    kind: MorphKind
    tag: str
    value: str = ""
    source: str = ""
    pattern: str = ""


@dataclass(frozen=True)
class Forward:
    """Send a copy to `destination`, changed by `morphs` (none: the spooled bytes as they are)."""

    destination: str
    morphs: tuple[Morph, ...] = ()
    rule: str = ""


@dataclass(frozen=True)
class Prefetch:
    """Ask the Q/R node `source` to C-MOVE the patient's prior studies to the AE title `move_destination`."""

    rule: str
    source: str  # a destination name (a DICOM node that is a Q/R SCP)
    move_destination: str  # AE title the source knows
    match: tuple[tuple[str, str], ...]  # C-FIND keys, templates already filled in from the instance
    studies: int  # how many of the most recent other studies
    once_key: str = ""  # e.g. the StudyInstanceUID when `once_per: study`; '' fires every time


@dataclass(frozen=True)
class Decision:
    """Everything the rules decided for one instance."""

    forwards: tuple[Forward, ...] = ()
    prefetches: tuple[Prefetch, ...] = ()
    matched: tuple[str, ...] = ()
    dropped: bool = False
    explanation: tuple[str, ...] = field(default=(), compare=False)  # why rules did not match (dry runs)

    @property
    def destinations(self) -> tuple[str, ...]:
        """Each destination once, in the order first named."""
        return tuple(dict.fromkeys(forward.destination for forward in self.forwards))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        forwards = tuple(
            Forward(f["destination"], tuple(Morph(MorphKind(m["kind"]), m["tag"], m["value"], m["source"], m["pattern"])
                                            for m in f["morphs"]), f["rule"])
            for f in data.get("forwards", ())
        )
        prefetches = tuple(
            Prefetch(p["rule"], p["source"], p["move_destination"], tuple(tuple(pair) for pair in p["match"]),
                     p["studies"], p["once_key"])
            for p in data.get("prefetches", ())
        )
        return cls(forwards, prefetches, tuple(data.get("matched", ())), bool(data.get("dropped", False)))
