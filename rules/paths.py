"""Where a rule looks in a data set: element paths, and the values found there as text.

A path names an element by keyword (`Modality`) or tag (`(0008,0080)`,
private tags included), or an element inside sequence items
(`RequestAttributesSequence[*].ScheduledProcedureStepID`; `[0]` is the first
item only, and a sequence step without an index means every item).
`parse_path` resolves the text to tags once; `values_at(dataset, path)` returns
every value found there as text without its trailing padding, and never
raises: a missing, empty or unreadable element has no values.

Reading values is the hot path of rule evaluation, so an element pydicom has
not converted yet is decoded here from its raw bytes when it is plain ASCII
text, and a raw sequence is split into items by `rules.sequences`; anything
else (text in other character sets, binary VRs, sequences the scanner does
not read) goes through pydicom's own conversion. `reader(path)` compiles a
path into the function a rule calls per instance: the usual cases (a raw text
element, a raw sequence's items holding one) in one pass over pydicom's store,
looked up by `Key`, and the rest through `values_at`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import repeat
from typing import Protocol, Union

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_dict, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as PydicomSequence
from pydicom.tag import BaseTag

from rules.sequences import SEQUENCE_VRS, RawItem, ScanError, raw_element, scan_items
from rules.source import closest

TAG_TEXT = re.compile(r"^\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)$")
STEP_TEXT = re.compile(r"^(?P<name>\([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\)|[A-Za-z][A-Za-z0-9]*)(?:\[(?P<index>\*|\d+)\])?$")
SEQUENCE_VR = "SQ"
UNKNOWN_VR = "UN"
TEXT_VRS = frozenset(
    ("AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT")
)
READABLE_VRS = TEXT_VRS | {UNKNOWN_VR}  # the VRs _raw_texts decodes (UN: when the dictionary does not know better)
SINGLE_VALUED_VRS = frozenset(("LT", "ST", "UR", "UT"))  # a backslash in them is text, not a separator
PADDING = " \0"
VALUE_SEPARATOR = "\\"
DICTIONARY_VRS = 4096  # the VRs of the tags implicit VR files use, looked up once
CHARACTER_SET = BaseTag(0x00080005)  # Specific Character Set
PYDICOM_GET_ITEM = Dataset.get_item  # a data set that keeps it: its elements may be looked up in its own store
SEQUENCE_ITEM = "(item)"  # what a sequence holds, per item: enough for `exists`, never equal to a written value


class BadReference(ValueError):
    """A name in a rule that refers to nothing usable (a misspelt keyword, a path that is no path); `hint` helps."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class Key(BaseTag):
    """A tag that compares as a plain int, for lookups: pydicom's store holds BaseTags, whose `__eq__` is a Python
    function (it first converts what it is compared with), while this one is int's and is tried first."""

    __eq__ = int.__eq__
    __hash__ = int.__hash__


@dataclass(frozen=True)
class Step:
    """One element of a path; `index` picks a sequence item (None: every item)."""

    tag: int
    index: int | None = None


@dataclass(frozen=True)
class ElementPath:
    """A resolved path: `text` as written, `vr` of its last element ('' when no dictionary knows it)."""

    text: str
    steps: tuple[Step, ...]
    vr: str
    tag: int  # of the last element


def parse_tag(text: str) -> int:
    """The tag of a keyword or '(gggg,eeee)'; BadReference with the closest keyword otherwise."""
    match = TAG_TEXT.match(text)
    if match:
        return BaseTag(int(match.group(1) + match.group(2), 16))
    tag = tag_for_keyword(text)
    if tag is None:
        hint = closest(text, keyword_dict) or "write a keyword of the DICOM dictionary or a tag as (gggg,eeee)"
        raise BadReference(f"unknown DICOM keyword '{text}'", hint)
    return BaseTag(tag)  # pydicom looks a BaseTag up without converting it first


def parse_path(text: str) -> ElementPath:
    """Resolve `text` ('Keyword', '(gggg,eeee)', 'Sequence[*].Keyword', ...) once; BadReference if it cannot be."""
    parts = text.split(".")
    steps = tuple(_step(part, text) for part in parts)
    for step, part in zip(steps[:-1], parts):
        if dictionary_vr(step.tag) not in (SEQUENCE_VR, ""):
            raise BadReference(f"'{part}' in '{text}' is not a sequence",
                               "only a sequence (VR SQ) can be followed by '.'")
    if steps[-1].index is not None:
        raise BadReference(f"'{text}' ends with an item index",
                           "name an element inside the item, e.g. Sequence[0].Keyword")
    return ElementPath(text, steps, dictionary_vr(steps[-1].tag), steps[-1].tag)


def _step(part: str, text: str) -> Step:
    match = STEP_TEXT.match(part)
    if match is None:
        where = f" in '{text}'" if part != text else ""
        raise BadReference(f"'{part}'{where} is not a DICOM keyword, a tag (gggg,eeee) or a sequence path")
    index = match.group("index")
    return Step(Key(parse_tag(match.group("name"))), None if index in (None, "*") else int(index))


@lru_cache(maxsize=DICTIONARY_VRS)
def dictionary_vr(tag: int) -> str:
    """The data dictionary's VR of `tag` ('US or SS' gives 'US'); '' for a tag it does not know."""
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return ""


def values_at(dataset: Dataset | None, path: ElementPath) -> tuple[str, ...]:
    """Every non-empty value at `path`, as text; () when there is none or it cannot be read."""
    if dataset is None:
        return ()
    try:
        if len(path.steps) == 1:
            return element_texts(dataset, path.tag)
        return _values(dataset, path.steps)
    except Exception:  # noqa: BLE001 - a malformed element reads as missing: evaluation never raises
        return ()


class HasHeader(Protocol):
    """What a reader reads from: an instance's facts (`rules.facts.InstanceFacts`), whose header may be None."""

    header: Dataset | None


def reader(path: ElementPath) -> Callable[[HasHeader], tuple[str, ...]]:
    """`values_at(source.header, path)` compiled for one path: what a rule's subject reads on the hot path.

    A top-level element pydicom left raw as plain ASCII text, the usual case, is decoded here with
    its tag and dictionary VR bound once, in one call; a path into the items of one sequence is read
    by `_item_reader`; anything else goes through `values_at`.
    """
    if len(path.steps) == 2:
        return _item_reader(path)
    if len(path.steps) > 2:
        return lambda source: values_at(source.header, path)
    tag, implicit_vr = path.tag, path.vr or UNKNOWN_VR

    def read(source: HasHeader) -> tuple[str, ...]:
        dataset = source.header
        if dataset is None:
            return ()
        if type(dataset).get_item is not PYDICOM_GET_ITEM:  # as _stored does
            return values_at(dataset, path)
        element = dataset._dict.get(tag)
        if element is None:
            return ()
        if type(element) is RawDataElement:
            vr = element.VR
            if vr is None or vr == UNKNOWN_VR:
                vr = implicit_vr
            raw = element.value
            if vr in READABLE_VRS and type(raw) is bytes and raw.isascii():  # as _raw_texts reads it
                text = raw.decode("ascii")
                if VALUE_SEPARATOR in text and vr not in SINGLE_VALUED_VRS:
                    return _split(text.split(VALUE_SEPARATOR))
                text = text.rstrip(PADDING)
                return (text,) if text else ()
        return values_at(dataset, path)

    return read


def _item_reader(path: ElementPath) -> Callable[[HasHeader], tuple[str, ...]]:
    """The reader of a path into the items of one sequence (`Sequence[*].Keyword`): the usual case, a raw
    little endian sequence holding the element as plain ASCII text, is read with the items keeping only that
    element; anything else (a converted sequence, text pydicom must decode) goes through `values_at`."""
    sequence, last = path.steps
    tag, first, stop = last.tag, sequence.index or 0, None if sequence.index is None else sequence.index + 1

    def read(source: HasHeader) -> tuple[str, ...]:
        dataset = source.header
        if dataset is None:
            return ()
        if type(dataset).get_item is not PYDICOM_GET_ITEM:  # as _stored does
            return values_at(dataset, path)
        element = dataset._dict.get(sequence.tag)
        if element is None:
            return ()
        if type(element) is not RawDataElement or not element.is_little_endian or element.VR not in SEQUENCE_VRS:
            return values_at(dataset, path)
        try:
            items = scan_items(element.value, element.is_implicit_VR, tag)  # as _items reads them
        except Exception:  # noqa: BLE001 - values_at says what a sequence the scanner does not read holds
            return values_at(dataset, path)
        values: tuple[str, ...] = ()
        for item in items[first:stop]:
            scanned = item.get(tag)
            if scanned is not None:
                texts = _raw_texts(tag, scanned[0], scanned[1])
                if texts is None:  # pydicom must convert it: values_at does
                    return values_at(dataset, path)
                values += texts
        return values

    return read


Container = Union[Dataset, RawItem]  # a data set, or a sequence item read by rules.sequences


def _values(dataset: Dataset, steps: tuple[Step, ...]) -> tuple[str, ...]:
    """The values at `steps` (more than one) of a data set: its sequences' items, step by step, then the element."""
    containers: list[Container] = [dataset]
    for step in steps[:-1]:
        items: list[Container] = []
        for container in containers:
            items.extend(_items(container, step, dataset))
        containers = items
    tag, values = steps[-1].tag, ()
    for container in containers:
        values += element_texts(container, tag, dataset)
    return values


def _items(container: Container, step: Step, root: Dataset) -> list[Container]:
    """The items of the sequence `step` names (one when it has an index), in the data set `root` or its items.

    A raw little endian sequence is split by `rules.sequences` (fast); if it cannot be, or it is not
    raw, pydicom converts it.
    """
    items = None
    if isinstance(container, dict):
        scanned = container.get(step.tag)
        if scanned is None:
            return []
        vr, value, implicit = scanned
    else:
        element = _stored(container, step.tag)
        if element is None:
            return []
        raw = isinstance(element, RawDataElement) and element.is_little_endian
        vr, value, implicit = (element.VR, element.value, element.is_implicit_VR) if raw else (None, None, False)
    if isinstance(value, bytes) and vr in SEQUENCE_VRS:
        try:
            items = scan_items(value, implicit)
        except ScanError:
            pass
    if items is None:
        value = _converted(container, step.tag, root).value
        items = [item for item in value if isinstance(item, Dataset)] if isinstance(value, PydicomSequence) else []
    return items if step.index is None else items[step.index:step.index + 1]


def element_texts(container: Container, tag: int, root: Dataset | None = None) -> tuple[str, ...]:
    """The values of the element `tag` of a data set or item (not inside its sequences) as text."""
    if isinstance(container, dict):
        scanned = container.get(tag)
        if scanned is None:
            return ()
        texts = _raw_texts(tag, scanned[0], scanned[1])
    else:
        element = _stored(container, tag)
        if element is None:
            return ()
        if not isinstance(element, RawDataElement):
            return texts_of(element.value)
        texts = _raw_texts(tag, element.VR, element.value)  # None for a deferred value: pydicom reads it
    return texts if texts is not None else texts_of(_converted(container, tag, root).value)


def _stored(dataset: Dataset, tag: int) -> DataElement | RawDataElement | None:
    """The element `tag` as the data set stores it: raw until something converts it.

    Looked up in pydicom's own store, as `Dataset.get_item` does but without its key conversion,
    which costs twice the lookup; a deferred element (its value None) is left for the caller to
    convert. A data set class with its own `get_item` (lazy, instrumented) is read through it.
    """
    if type(dataset).get_item is PYDICOM_GET_ITEM:
        return dataset._dict.get(tag)
    return dataset.get_item(tag)


def _converted(container: Container, tag: int, root: Dataset | None) -> DataElement:
    """The element converted by pydicom (binary VRs, text not in ASCII, deferred values, sequences the scanner
    does not read).

    A scanned item is made a data set holding the character set of `root`, the data set it came
    from, so that pydicom decodes its text as the data set says.
    """
    if isinstance(container, dict):
        elements = {BaseTag(number): raw_element(number, scanned) for number, scanned in container.items()}
        charset = root.get_item(CHARACTER_SET) if root is not None else None
        if charset is not None:
            elements[BaseTag(CHARACTER_SET)] = charset
        container = Dataset(elements)
    return container[tag]


def _raw_texts(tag: int, vr: str | None, raw: bytes | None) -> tuple[str, ...] | None:
    """The values of an unconverted ASCII text element; None when pydicom must convert it."""
    if vr is None or vr == UNKNOWN_VR:
        vr = dictionary_vr(tag) or UNKNOWN_VR
    if vr not in READABLE_VRS or not isinstance(raw, bytes) or not raw.isascii():
        return None
    text = raw.decode("ascii")
    if VALUE_SEPARATOR in text and vr not in SINGLE_VALUED_VRS:
        return _split(text.split(VALUE_SEPARATOR))
    text = text.rstrip(PADDING)
    return (text,) if text else ()


def texts_of(value: object) -> tuple[str, ...]:
    """A converted element value as texts: one per value; a sequence holds one placeholder per item."""
    if value is None:
        return ()
    if isinstance(value, Dataset):
        return (SEQUENCE_ITEM,)
    if isinstance(value, (bytes, bytearray)):
        return _split(bytes(value).decode("latin-1").split(VALUE_SEPARATOR))
    if isinstance(value, str):
        return _split((value,))
    if isinstance(value, (list, tuple, MultiValue, PydicomSequence)):  # several values, or sequence items
        return tuple(text for item in value for text in texts_of(item))
    return _split((str(value),))


def _split(values: Iterable[str]) -> tuple[str, ...]:
    """The values without their padding, the empty ones left out."""
    return tuple(filter(None, map(str.rstrip, values, repeat(PADDING))))
