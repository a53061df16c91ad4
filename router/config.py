"""The router's config file: its keys, their defaults, and checking them all before anything starts.

`load_config(path)` reads a YAML file with the sections `router:` (this
process tree: AE title, listen address, process counts, spool, durability),
`destinations:` (DICOM peers and local folders) and `rules:` (read by the
`rules` package), and returns a frozen `Config`. Every problem of the file is
reported at once as a `ConfigError` whose lines read `file:line:column: reason`.
Relative paths (spool, folder destinations) are taken from the config file's
directory, so a router started from anywhere finds the same spool.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from yaml.nodes import MappingNode, Node, ScalarNode

from router.net.values import validate_ae_title
from rules.load import Rule, read_rules
from rules.source import ConfigError, Reader, load_document

__all__ = ["Config", "ConfigError", "DicomDestination", "Durability", "FolderDestination", "load_config"]

CORES = os.cpu_count() or 1
TOP_KEYS = ("router", "destinations", "rules")
ROUTER_KEYS = (
    "ae_title", "listen", "listeners", "workers", "spool", "durability", "max_pdu", "allowed_calling_ae", "bus",
    "spool_limit",
)
DICOM_KEYS = ("address", "ae_title", "max_associations", "retry")
FOLDER_KEYS = ("folder",)
RETRY_KEYS = ("attempts", "backoff", "max_backoff")
MIN_MAX_PDU = 4096  # smaller P-DATA PDUs would cost more in headers than they carry
BUS_SCHEMES = ("ipc://", "tcp://")


class Durability(str, Enum):
    """What 'stored' means before a C-STORE is answered Success."""

    FSYNC = "fsync"  # the file and its directory entry are on disk
    FLUSH = "flush"  # written to the operating system (survives a process crash, not a power cut)
    NONE = "none"  # written when the operating system gets to it


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed delivery is tried again."""

    attempts: int = 10
    backoff: float = 5.0  # seconds before the first retry; doubled each time
    max_backoff: float = 600.0


@dataclass(frozen=True)
class DicomDestination:
    """A DICOM peer the router stores to (C-STORE) and may query (C-FIND/C-MOVE)."""

    name: str
    address: Address
    ae_title: str
    max_associations: int = 2  # C-STORE associations open at once, for the whole router (workers.shares)
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True)
class FolderDestination:
    """A local folder that receives Part 10 files by study, series and instance."""

    name: str
    folder: Path
    retry: RetryPolicy = field(default_factory=RetryPolicy)


Destination = DicomDestination | FolderDestination


@dataclass(frozen=True)
class RouterSettings:
    """The `router:` section."""

    ae_title: str = "ROUTER"
    listen: Address = Address("0.0.0.0", 11112)
    listeners: int = CORES
    workers: int = CORES
    spool: Path = Path("spool")
    durability: Durability = Durability.FSYNC
    max_pdu: int = 131072  # large PDUs: the receiver's work is per PDU
    allowed_calling_ae: tuple[str, ...] = ()
    bus: str | None = None  # None: ipc:// endpoints under the spool
    spool_limit: int | None = None  # bytes incoming/ may hold before C-STOREs are refused; None: no limit


@dataclass(frozen=True)
class Config:
    """A checked config file."""

    path: Path
    router: RouterSettings
    destinations: dict[str, Destination]
    rules: tuple[Rule, ...]


def load_config(path: str | Path) -> Config:
    """Read and check the config at `path`; ConfigError lists every problem."""
    path = Path(path)
    document = load_document(path)
    reader = Reader(path)
    base = path.resolve().parent
    sections = reader.mapping(document, "the config file", TOP_KEYS)
    router = _router(reader, sections.get("router"), base)
    destinations = _destinations(reader, sections.get("destinations"), base)
    folders = {name for name, destination in destinations.items() if isinstance(destination, FolderDestination)}
    rules = read_rules(reader, sections.get("rules"), _declared(sections.get("destinations")), folders)
    if "rules" not in sections and not reader.problems:
        reader.problem(document, "the config has no 'rules:' section", "without rules nothing is routed")
    reader.raise_problems()
    return Config(path, router, destinations, rules)


def _router(reader: Reader, node: Node | None, base: Path) -> RouterSettings:
    if node is None:
        return RouterSettings(spool=base / RouterSettings.spool)
    entries = reader.mapping(node, "router", ROUTER_KEYS)
    defaults = RouterSettings()
    listen = _address(reader, entries.get("listen"), "listen") or defaults.listen
    ae_title = _ae_title(reader, entries.get("ae_title"), "router.ae_title") or defaults.ae_title
    return RouterSettings(
        ae_title=ae_title,
        listen=listen,
        listeners=_optional_int(reader, entries.get("listeners"), "listeners", 1) or defaults.listeners,
        workers=_optional_int(reader, entries.get("workers"), "workers", 1) or defaults.workers,
        spool=base / (_optional_text(reader, entries.get("spool"), "spool") or defaults.spool),
        durability=_optional_durability(reader, entries.get("durability")) or defaults.durability,
        max_pdu=_max_pdu(reader, entries.get("max_pdu"), defaults.max_pdu),
        allowed_calling_ae=_ae_titles(reader, entries.get("allowed_calling_ae")),
        bus=_bus(reader, entries.get("bus")),
        spool_limit=reader.size(entries["spool_limit"], "spool_limit") if "spool_limit" in entries else None,
    )


def _destinations(reader: Reader, node: Node | None, base: Path) -> dict[str, Destination]:
    if node is None:
        return {}
    destinations: dict[str, Destination] = {}
    for name, entry in reader.mapping(node, "destinations").items():
        keys = reader.mapping(entry, f"destination '{name}'", DICOM_KEYS + FOLDER_KEYS)
        if "folder" in keys and "address" in keys:
            reader.problem(entry, f"destination '{name}' has both an address and a folder", "give one of them")
        elif "folder" in keys:
            folder = reader.text(keys["folder"], f"destinations.{name}.folder")
            if folder is not None:
                destinations[name] = FolderDestination(name, base / folder, _retry(reader, keys.get("retry"), name))
        elif "address" in keys:
            destination = _dicom_destination(reader, name, keys)
            if destination is not None:
                destinations[name] = destination
        else:
            reader.problem(entry, f"destination '{name}' has no address and no folder", "add 'address: host:port'")
    return destinations


def _declared(node: Node | None) -> set[str]:
    """Every destination name the file declares, valid or not (rules may name them)."""
    if not isinstance(node, MappingNode):
        return set()
    return {key.value for key, _ in node.value if isinstance(key, ScalarNode)}


def _dicom_destination(reader: Reader, name: str, keys: dict[str, Node]) -> DicomDestination | None:
    where = f"destinations.{name}"
    address = _address(reader, keys["address"], f"{where}.address")
    if "ae_title" not in keys:
        reader.problem(keys["address"], f"destination '{name}' has no ae_title", "the AE title the peer answers to")
    ae_title = _ae_title(reader, keys.get("ae_title"), f"{where}.ae_title")
    associations = _optional_int(reader, keys.get("max_associations"), f"{where}.max_associations", 1)
    retry = _retry(reader, keys.get("retry"), name)
    if address is None or ae_title is None:
        return None
    return DicomDestination(name, address, ae_title, associations or 2, retry)


def _retry(reader: Reader, node: Node | None, name: str) -> RetryPolicy:
    if node is None:
        return RetryPolicy()
    where = f"destinations.{name}.retry"
    keys = reader.mapping(node, where, RETRY_KEYS)
    defaults = RetryPolicy()
    attempts = _optional_int(reader, keys.get("attempts"), f"{where}.attempts", 1)
    backoff = reader.duration(keys["backoff"], f"{where}.backoff") if "backoff" in keys else None
    ceiling = reader.duration(keys["max_backoff"], f"{where}.max_backoff") if "max_backoff" in keys else None
    policy = RetryPolicy(
        attempts or defaults.attempts,
        defaults.backoff if backoff is None else backoff,
        defaults.max_backoff if ceiling is None else ceiling,
    )
    if policy.max_backoff < policy.backoff:
        reader.problem(node, f"{where}.max_backoff is shorter than its backoff")
    return policy


# ---- single values ----------------------------------------------------------
def _address(reader: Reader, node: Node | None, what: str) -> Address | None:
    pair = reader.address(node, what) if node is not None else None
    return Address(*pair) if pair else None


def _ae_title(reader: Reader, node: Node | None, what: str) -> str | None:
    text = reader.text(node, what) if node is not None else None
    if text is None:
        return None
    try:
        return validate_ae_title(text)
    except ValueError as exc:
        reader.problem(node, f"{what}: {exc}")  # type: ignore[arg-type]
        return None


def _ae_titles(reader: Reader, node: Node | None) -> tuple[str, ...]:
    items = reader.sequence(node, "allowed_calling_ae") if node is not None else []
    titles = (_ae_title(reader, item, "each entry of allowed_calling_ae") for item in items)
    return tuple(title for title in titles if title is not None)


def _optional_int(reader: Reader, node: Node | None, what: str, minimum: int) -> int | None:
    return reader.integer(node, what, minimum) if node is not None else None


def _optional_text(reader: Reader, node: Node | None, what: str) -> str | None:
    return reader.text(node, what) if node is not None else None


def _optional_durability(reader: Reader, node: Node | None) -> Durability | None:
    return reader.choice(node, "durability", Durability) if node is not None else None


def _max_pdu(reader: Reader, node: Node | None, default: int) -> int:
    if node is None:
        return default
    value = reader.integer(node, "max_pdu", 0)
    if value is not None and 0 < value < MIN_MAX_PDU:
        reader.problem(node, f"max_pdu must be 0 (no limit) or at least {MIN_MAX_PDU}")
        return default
    return default if value is None else value


def _bus(reader: Reader, node: Node | None) -> str | None:
    endpoint = reader.text(node, "bus") if node is not None else None
    if endpoint is not None and not endpoint.startswith(BUS_SCHEMES):
        reader.problem(node, f"bus must be an ipc:// or tcp:// endpoint, not '{endpoint}'")  # type: ignore[arg-type]
        return None
    return endpoint
