"""Validation of values users hand the engine: AE titles and UIDs (and a peer's UID as a file name).

Each function returns the value in its canonical form (a str) or raises a
ValueError that says what is wrong, so a bad title fails where it is set.
"""

from __future__ import annotations

import re
from functools import lru_cache

MAX_AE_TITLE_LENGTH = 16
MAX_UID_LENGTH = 64
# Digits and dots, no empty component. Components with leading zeros break PS3.5 9.1 but are sent by
# real modalities (old private SOP classes among them) and pass pynetdicom's default check: allowed.
_UID_PATTERN = re.compile(r"[0-9]+(\.[0-9]+)*")
_BACKSLASH = "\\"
_FILE_NAME_UID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")  # a UID, or near enough to name a file safely
_LONGEST_PADDED = 2 * MAX_UID_LENGTH  # longer than this, a value is no UID whatever its padding
_KNOWN_UIDS = 4096  # valid UIDs remembered: the same few hundred are checked for every association


def validate_ae_title(value: str | bytes) -> str:
    """An AE title as str without surrounding spaces; bytes are decoded as ASCII."""
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"Invalid AE title {value!r}: only ASCII characters are allowed") from None
    if not isinstance(value, str):
        raise TypeError(f"An AE title must be str or bytes, not {type(value).__name__}")
    title = value.strip(" ")
    if not title:
        raise ValueError("Invalid AE title: it is empty or only spaces")
    if len(title) > MAX_AE_TITLE_LENGTH:
        raise ValueError(f"Invalid AE title '{title}': {len(title)} characters, at most {MAX_AE_TITLE_LENGTH}")
    if _BACKSLASH in title or any(ord(char) < 0x20 or ord(char) > 0x7E for char in title):
        raise ValueError(f"Invalid AE title {title!r}: no backslash, control or non-ASCII characters")
    return title


def validate_uid(value: str | bytes, what: str) -> str:
    """A UID as str without padding, or ValueError naming `what` it was meant to be."""
    uid = _valid_uid(value)
    if uid is None:
        shown = _unpadded(value[:_LONGEST_PADDED])
        raise ValueError(f"Invalid {what} UID '{shown}': a UID is 1 to 64 characters of digits and dots")
    return uid


def is_uid(value: str | bytes) -> bool:
    """True if `validate_uid` takes `value`."""
    return _valid_uid(value) is not None


def uid_as_file_name(value: str) -> str:
    """`value`, a UID a peer sent, if it can name a file in a folder; ValueError if not.

    Looser than `validate_uid` (UIDs with letters exist in the wild and name files
    well), but nothing that could leave the folder: no separator, no leading dot, at
    most 64 characters.
    """
    if not _FILE_NAME_UID.fullmatch(value):
        raise ValueError(f"UID {value!r} cannot name a file")
    return value


def _valid_uid(value: str | bytes) -> str | None:
    if len(value) > _LONGEST_PADDED:
        return None  # no UID, however padded: not worth remembering (a peer may send 64 KB of it)
    return _valid_short_uid(value)


@lru_cache(maxsize=_KNOWN_UIDS)
def _valid_short_uid(value: str | bytes) -> str | None:
    uid = _unpadded(value)
    return uid if uid and len(uid) <= MAX_UID_LENGTH and _UID_PATTERN.fullmatch(uid) else None


def _unpadded(value: str | bytes) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    return str(value).rstrip("\0 ")
