"""What rules know about an instance besides its header: the association it came on and its identity.

`InstanceFacts` is what the worker hands the rules for one instance. A rule
names a fact by `Fact` (`calling_ae`, `called_ae`, `peer_ip`, `sop_class`,
`transfer_syntax`); `fact_reader` reads it as the texts conditions compare.
SOP classes and transfer syntaxes may be written by name or UID: `resolve_uid`
turns a name into its UID once, when the rules are read, and a UID fact also
reads as its name, so a regex or glob can match either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from operator import attrgetter

from pydicom import Dataset
from pydicom.uid import UID, AllTransferSyntaxes

from router.net import sop_class
from router.net.sop_class import keyword_to_uid, uid_to_keyword
from rules.paths import BadReference
from rules.source import closest

UID_TEXT_CHARACTERS = frozenset("0123456789.")
TRANSFER_SYNTAXES: dict[str, UID] = {UID(uid).keyword: UID(uid) for uid in AllTransferSyntaxes}
TRANSFER_SYNTAX_NAMES: dict[str, str] = {str(uid): name for name, uid in TRANSFER_SYNTAXES.items()}
SOP_CLASS_NAMES: tuple[str, ...] = tuple(name for name, value in vars(sop_class).items() if isinstance(value, UID))


@dataclass(frozen=True)
class InstanceFacts:
    """What the rules may look at: the instance's identity, the association it came on, and its header.

    `header` is the data set read without pixel data (see `rules.evaluate.read_header`);
    None when no rule looks at data set elements.
    """

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    calling_ae: str
    called_ae: str
    peer_address: str
    header: Dataset | None = None


class Fact(str, Enum):
    CALLING_AE = "calling_ae"
    CALLED_AE = "called_ae"
    PEER_IP = "peer_ip"
    SOP_CLASS = "sop_class"
    TRANSFER_SYNTAX = "transfer_syntax"


FIELDS = {Fact.CALLING_AE: "calling_ae", Fact.CALLED_AE: "called_ae", Fact.PEER_IP: "peer_address",
          Fact.SOP_CLASS: "sop_class_uid", Fact.TRANSFER_SYNTAX: "transfer_syntax"}  # where InstanceFacts holds each
UID_FACTS = (Fact.SOP_CLASS, Fact.TRANSFER_SYNTAX)


def fact_reader(fact: Fact) -> Callable[[InstanceFacts], tuple[str, ...]]:
    """The function giving the values of `fact` for one instance (() when unknown), its field chosen once."""
    field = attrgetter(FIELDS[fact])
    if fact not in UID_FACTS:
        def read(facts: InstanceFacts) -> tuple[str, ...]:
            value = field(facts).strip()
            return (value,) if value else ()

        return read
    name_of = uid_to_keyword if fact is Fact.SOP_CLASS else TRANSFER_SYNTAX_NAMES.get

    def read_uid(facts: InstanceFacts) -> tuple[str, ...]:
        """The UID and its keyword, if it has one."""
        uid = field(facts).rstrip("\0 ")
        name = name_of(uid)
        return (uid, name) if name else (uid,) if uid else ()

    return read_uid


def resolve_uid(fact: Fact, text: str) -> str:
    """The UID a SOP class or transfer syntax is written as (name or UID); BadReference naming the closest name."""
    if set(text) <= UID_TEXT_CHARACTERS:
        return text
    uid = keyword_to_uid(text) if fact is Fact.SOP_CLASS else TRANSFER_SYNTAXES.get(text)
    if uid is None:
        names = SOP_CLASS_NAMES if fact is Fact.SOP_CLASS else tuple(TRANSFER_SYNTAXES)
        raise BadReference(f"unknown {fact.value} '{text}'", closest(text, names) or "write its name or its UID")
    return str(uid)
