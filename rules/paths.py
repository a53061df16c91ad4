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
not read) goes through pydicom's own conversion.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Union

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_dict, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as PydicomSequence
from pydicom.tag import BaseTag

from rules.sequences import RawItem, ScanError, scan_items
from rules.source import closest

TAG_TEXT = re.compile(r"^\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)$")
STEP_TEXT = re.compile(r"^(?P<name>\([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\)|[A-Za-z][A-Za-z0-9]*)(?:\[(?P<index>\*|\d+)\])?$")
SEQUENCE_VR = "SQ"
UNKNOWN_VR = "UN"
TEXT_VRS = frozenset(
    ("AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT")
)
SINGLE_VALUED_VRS = frozenset(("LT", "ST", "UR", "UT"))  # a backslash in them is text, not a separator
PADDING = " \0"
VALUE_SEPARATOR = "\\"
DICTIONARY_VRS = 4096  # the VRs of the tags implicit VR files use, looked up once
CHARACTER_SET = BaseTag(0x00080005)  # Specific Character Set
SEQUENCE_ITEM = "(item)"  # what a sequence holds, per item: enough for `exists`, never equal to a written value


class BadReference(ValueError):
    """A name in a rule that refers to nothing usable (a misspelt keyword, a path that is no path); `hint` helps."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


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
    return Step(parse_tag(match.group("name")), None if index in (None, "*") else int(index))


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
        return _values(dataset, path.steps, dataset.get_item(CHARACTER_SET))
    except Exception:  # noqa: BLE001 - a malformed element reads as missing: evaluation never raises
        return ()


Container = Union[Dataset, RawItem]  # a data set, or a sequence item read by rules.sequences
Element = Union[DataElement, RawDataElement]


def _values(container: Container, steps: tuple[Step, ...], charset: Element | None) -> tuple[str, ...]:
    """The values at `steps` of a data set or item; `charset` is the data set's Specific Character Set."""
    step = steps[0]
    if len(steps) == 1:
        return element_texts(container, step.tag, charset)
    return tuple(value for item in _items(container, step, charset) for value in _values(item, steps[1:], charset))


def _items(container: Container, step: Step, charset: Element | None) -> list[Container]:
    """The items of the sequence `step` names (one when it has an index)."""
    element = _element(container, step.tag)
    if element is None:
        return []
    items = _scanned(element) if isinstance(element, RawDataElement) else None
    if items is None:
        value = _converted(container, step.tag, charset).value
        items = [item for item in value if isinstance(item, Dataset)] if isinstance(value, PydicomSequence) else []
    return items if step.index is None else items[step.index:step.index + 1]


def _scanned(element: RawDataElement) -> list[Container] | None:
    """A raw sequence's items read by `rules.sequences` (fast), or None for pydicom to convert it."""
    if not element.is_little_endian or not isinstance(element.value, bytes) or element.VR not in (None, SEQUENCE_VR):
        return None
    try:
        return list(scan_items(element.value, element.is_implicit_VR))
    except ScanError:
        return None


def element_texts(container: Container, tag: int, charset: Element | None = None) -> tuple[str, ...]:
    """The values of the element `tag` of a data set or item (not inside its sequences) as text."""
    element = container.get(tag) if isinstance(container, dict) else container.get_item(tag)  # _element, inlined
    if element is None:
        return ()
    if isinstance(element, RawDataElement):
        texts = _raw_texts(element)
        if texts is not None:
            return texts
        element = _converted(container, tag, charset)
    return texts_of(element.value)


def _element(container: Container, tag: int) -> Element | None:
    return container.get(tag) if isinstance(container, dict) else container.get_item(tag)


def _converted(container: Container, tag: int, charset: Element | None) -> DataElement:
    """The element converted by pydicom (binary VRs, text not in ASCII, sequences the scanner does not read).

    A scanned item is wrapped in a data set holding the character set of the data set it came from, so
    that pydicom decodes its text as the data set says.
    """
    if isinstance(container, dict):
        elements = {BaseTag(number): element for number, element in container.items()}
        if charset is not None:
            elements[BaseTag(CHARACTER_SET)] = charset
        container = Dataset(elements)
    return container[tag]


def _raw_texts(element: RawDataElement) -> tuple[str, ...] | None:
    """The values of an unconverted ASCII text element; None when pydicom must convert it."""
    vr = element.VR if element.VR not in (None, UNKNOWN_VR) else dictionary_vr(element.tag) or UNKNOWN_VR
    raw = element.value
    if (vr not in TEXT_VRS and vr != UNKNOWN_VR) or not isinstance(raw, bytes) or not raw.isascii():
        return None
    text = raw.decode("ascii")
    if vr in SINGLE_VALUED_VRS or VALUE_SEPARATOR not in text:
        text = text.rstrip(PADDING)
        return (text,) if text else ()
    return _split(text.split(VALUE_SEPARATOR))


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
    stripped = (value.rstrip(PADDING) for value in values)
    return tuple(value for value in stripped if value)
