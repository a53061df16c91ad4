"""Third-party Query/Retrieve SCPs as test peers: DCMTK's dcmqrscp and pynetdicom's qrscp.

Each is started from a generated configuration on a free loopback port, as a
`tests.conftest.Peer`, over the same library of instances, and knows the same
move destinations (AE title -> port on 127.0.0.1):

- dcmqrscp: a `dcmqrscp.cfg` (one storage area for its AE title, the
  destinations in its HostTable); the files are copied into the storage area
  and indexed with `dcmqridx`, so the archive holds the originals' bytes.
- pynetdicom's qrscp: an ini in the layout of its default.ini (instance
  folder and SQLite database in the test's folder, absolute paths since the
  app resolves relative ones against its own package); the instances are
  loaded by C-STORE with our storescu app, and it keeps each data set as sent.

Each `Archive` carries, as data, what its peer does its own way (`Quirks`):
the transfer syntax it sends an instance in when our SCUs retrieve it, and
whether it answers a C-FIND above the IMAGE level with one response per
matching instance rather than one per matching entity (pynetdicom's qrscp
searches its table of instances and returns every row it finds).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Mapping

import pytest

from router.net.presentation import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
)
from tests.conftest import LOOPBACK, Peer, PeerStarter, in_ci, our_app, pynetdicom_app, run_client

DCMQRSCP, PYNETDICOM = "dcmqrscp", "pynetdicom"
DCMTK_BIN = Path("/usr/bin")  # DCMTK's tools by absolute path: our venv's bin holds pynetdicom's apps of the same names
DCMQRSCP_TITLE, PYNETDICOM_TITLE = "DCMQRSCP", "PYQRSCP"
MAX_PDU = 16384
MAX_ASSOCIATIONS = 16
MAX_STUDIES = 100
ACSE_TIMEOUT, DIMSE_TIMEOUT = 10, 20  # seconds, for the peers' own waits

@dataclass(frozen=True)
class Quirks:
    """What a peer does its own way, where the standard leaves it a choice (or where it strays)."""

    get_sent_as: Mapping[str, tuple[str, ...]]  # the syntaxes an instance may go in over a C-GET from our getscu
    move_sent_as: Mapping[str, tuple[str, ...]]  # the same over a C-MOVE to our storage SCPs (absent: unchanged)
    one_match_per_instance: bool  # a C-FIND match is repeated once per instance under it


#: dcmqrscp sends a C-GET's instance in the first accepted context of its SOP class, which is our getscu's
#: Explicit VR Little Endian one; for a C-MOVE it proposes one context per SOP class with the uncompressed
#: syntaxes, ordered by what it met first in the study, and converts the others: an uncompressed instance
#: arrives in either little endian syntax.
DCMQRSCP_QUIRKS = Quirks(
    get_sent_as={
        IMPLICIT_VR_LITTLE_ENDIAN: (EXPLICIT_VR_LITTLE_ENDIAN,),
        DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: (EXPLICIT_VR_LITTLE_ENDIAN,),
    },
    move_sent_as={
        syntax: (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
        for syntax in (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)
    },
    one_match_per_instance=False,
)
#: pynetdicom's qrscp keeps an instance's own syntax where a context of it was accepted (our getscu has none of
#: Deflated; for a C-MOVE it proposes each instance's own), and answers C-FIND from its table of instances.
PYNETDICOM_QUIRKS = Quirks(
    get_sent_as={DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: (EXPLICIT_VR_LITTLE_ENDIAN,)},
    move_sent_as={},
    one_match_per_instance=True,
)


@dataclass
class Archive:
    """A running third-party Q/R SCP holding the `originals` and knowing the `destinations`."""

    peer: Peer
    ae_title: str
    originals: dict[str, Path]  # by SOP Instance UID
    destinations: dict[str, int]  # move destination AE title -> its port
    quirks: Quirks

    @property
    def port(self) -> int:
        return self.peer.port

    def get_sent_as(self, syntax: str) -> tuple[str, ...]:
        return self.quirks.get_sent_as.get(syntax, (syntax,))

    def move_sent_as(self, syntax: str) -> tuple[str, ...]:
        return self.quirks.move_sent_as.get(syntax, (syntax,))


def require(present: bool, message: str) -> None:
    """Skip the test when part of a peer is missing, or fail it under CI, as tests/conftest.py does for markers."""
    if present:
        return
    if in_ci():
        pytest.fail(f"CI=true and a required peer is missing: {message}", pytrace=False)
    pytest.skip(message)


def dcmtk_tool(name: str) -> str:
    """DCMTK's `name` by absolute path."""
    path = DCMTK_BIN / name
    require(os.access(path, os.X_OK), f"DCMTK's {name} is not installed at {path} (marker 'dcmtk')")
    return str(path)


# ---- DCMTK dcmqrscp ----------------------------------------------------------------------------
def dcmqrscp_config(port: int, storage: Path, destinations: Mapping[str, int]) -> str:
    """dcmqrscp.cfg: one read/write storage area for DCMQRSCP_TITLE, open to any peer; the destinations by title."""
    hosts = [f"{title.lower()} = ({title}, localhost, {port_})" for title, port_ in destinations.items()]
    return "\n".join([
        f"NetworkTCPPort  = {port}",
        f"MaxPDUSize      = {MAX_PDU}",
        f"MaxAssociations = {MAX_ASSOCIATIONS}",
        "HostTable BEGIN", *hosts, "HostTable END",
        "VendorTable BEGIN", "VendorTable END",
        "AETable BEGIN", f"{DCMQRSCP_TITLE} {storage} RW ({MAX_STUDIES}, 1024mb) ANY", "AETable END",
    ]) + "\n"


def index_into(storage: Path, originals: Mapping[str, Path]) -> None:
    """Copy the files into dcmqrscp's storage area and index them there with dcmqridx."""
    storage.mkdir(parents=True)
    copies = [shutil.copy(path, storage / f"{uid}.dcm") for uid, path in originals.items()]
    result = run_client([dcmtk_tool("dcmqridx"), str(storage), *copies])
    assert result.returncode == 0, result.output


def start_dcmqrscp(peers: PeerStarter, folder: Path, originals: Mapping[str, Path], destinations: Mapping[str, int]) -> Archive:
    index_into(folder / "storage", originals)
    config = folder / "dcmqrscp.cfg"
    binary = dcmtk_tool("dcmqrscp")

    def command(port: int) -> list[str]:
        config.write_text(dcmqrscp_config(port, folder / "storage", destinations))
        timeouts = ["-ta", str(ACSE_TIMEOUT), "-td", str(DIMSE_TIMEOUT)]
        return [binary, "-c", str(config), "-dhl", *timeouts, "-v", str(port)]

    peer = peers.start(DCMQRSCP, command)
    return Archive(peer, DCMQRSCP_TITLE, dict(originals), dict(destinations), DCMQRSCP_QUIRKS)


# ---- pynetdicom qrscp --------------------------------------------------------------------------
def pynetdicom_config(port: int, folder: Path, destinations: Mapping[str, int]) -> str:
    """qrscp's ini, as its default.ini lays it out: [DEFAULT] settings, then a section per move destination."""
    lines = [
        "[DEFAULT]",
        f"ae_title: {PYNETDICOM_TITLE}",
        f"port: {port}",
        f"max_pdu: {MAX_PDU}",
        f"acse_timeout: {ACSE_TIMEOUT}",
        f"dimse_timeout: {DIMSE_TIMEOUT}",
        f"network_timeout: {DIMSE_TIMEOUT}",
        f"bind_address: {LOOPBACK}",
        f"instance_location: {folder / 'instances'}",
        f"database_location: {folder / 'instances.sqlite'}",
        "log_identifier: False",
    ]
    for title, port_ in destinations.items():
        lines += [f"[{title}]", f"address: {LOOPBACK}", f"port: {port_}"]
    return "\n".join(lines) + "\n"


def start_pynetdicom_qrscp(
    peers: PeerStarter, folder: Path, originals: Mapping[str, Path], destinations: Mapping[str, int]
) -> Archive:
    require(find_spec("sqlalchemy") is not None, "pynetdicom's qrscp needs sqlalchemy (pip install -e '.[dev]')")
    config = folder / "qrscp.ini"

    def command(port: int) -> list[str]:
        config.write_text(pynetdicom_config(port, folder, destinations))
        return pynetdicom_app("qrscp", "-c", str(config), "-v")

    peer = peers.start(PYNETDICOM, command)
    stored = run_client(our_app("storescu", LOOPBACK, str(peer.port), "-aec", PYNETDICOM_TITLE, *map(str, originals.values())))
    assert stored.returncode == 0, stored.output + peer.output()
    return Archive(peer, PYNETDICOM_TITLE, dict(originals), dict(destinations), PYNETDICOM_QUIRKS)


STARTERS = {DCMQRSCP: start_dcmqrscp, PYNETDICOM: start_pynetdicom_qrscp}
