"""Orthanc 1.10 as a test peer: a generated configuration, the server on free loopback ports, its REST API.

`OrthancStarter.start(modalities, **settings)` writes a JSON configuration into
the test's folder (DICOM and HTTP ports picked free, storage and index under
the same folder, no plugins, the called AE title checked, the DICOM nodes it
knows) and runs Orthanc as a `tests.conftest.Peer`, which ends it by its pid
at teardown. It is ready once its DICOM port listens and its REST API answers
GET /system, both within `ORTHANC_READY_TIMEOUT`; stopping takes it about 3 s
(its HTTP and DICOM servers wind down on timers). `Orthanc` reads and writes
through the REST API with urllib (stdlib only).

Orthanc answers C-FIND, C-MOVE and C-GET only for the nodes named in its
DicomModalities (our SCU among them), and moves only to those; a node whose
port is known only later is added through the REST API. Orthanc 1.10
has no bind-address option: both ports listen on every interface, and
RemoteAccessAllowed=false keeps the REST API to loopback callers.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Iterable

import pytest

from tests.conftest import LOOPBACK, Peer, PeerStarter, pick_free_port, wait_until

ORTHANC_PATHS = ("Orthanc", "/usr/sbin/Orthanc")  # Debian installs it in sbin, outside a user's PATH
ORTHANC_READY_TIMEOUT = 15.0
HTTP_TIMEOUT = 30.0  # one REST call (an upload or a download of a few MB)
DEFAULT_AE_TITLE = "ORTHANC"
UNUSED_PORT = 104  # the port of a node that only calls Orthanc: Orthanc never dials it
SCU_TIMEOUT = 10  # seconds Orthanc waits on a peer when it is the SCU (C-MOVE sub-operations, echo)
SCP_TIMEOUT = 30  # seconds an idle association with Orthanc stays open


def orthanc_binary() -> str | None:
    """Where the Orthanc executable is, or None when it is not installed."""
    return next((found for path in ORTHANC_PATHS if (found := shutil.which(path))), None)


@dataclass(frozen=True)
class Modality:
    """A DICOM node Orthanc knows (an entry of DicomModalities): it may query Orthanc, and receive moves."""

    ae_title: str
    port: int = UNUSED_PORT
    host: str = LOOPBACK

    def entry(self) -> dict[str, Any]:
        return {"AET": self.ae_title, "Host": self.host, "Port": self.port}


def configuration(
    directory: Path, dicom_port: int, http_port: int, ae_title: str, modalities: Iterable[Modality], settings: dict
) -> dict[str, Any]:
    """Orthanc's configuration: loopback-only REST API, test folders, no plugins; `settings` override."""
    return {
        "Name": "router-interop",
        "StorageDirectory": str(directory / "storage"),
        "IndexDirectory": str(directory / "index"),
        "Plugins": [],
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpThreadsCount": 4,
        "DicomPort": dicom_port,
        "DicomAet": ae_title,
        "DicomCheckCalledAet": True,
        "DicomModalities": {modality.ae_title: modality.entry() for modality in modalities},
        "DicomScuTimeout": SCU_TIMEOUT,
        "DicomScpTimeout": SCP_TIMEOUT,
        "DicomThreadsCount": 2,
        "ConcurrentJobs": 1,
        "SaveJobs": False,
        "DeidentifyLogs": False,
        "StorageCompression": False,
        "OverwriteInstances": False,
        **settings,
    }


class Orthanc:
    """A running Orthanc: its DICOM address and title, and its REST API."""

    def __init__(self, peer: Peer, ae_title: str, http_port: int) -> None:
        self.peer = peer
        self.ae_title = ae_title
        self.http_port = http_port

    @property
    def port(self) -> int:
        """The DICOM port."""
        return self.peer.port

    def output(self) -> str:
        return self.peer.output()

    # ---- REST -------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        """One REST call; urllib raises HTTPError on an error status."""
        call = urllib.request.Request(f"http://{LOOPBACK}:{self.http_port}{path}", data=body, method=method)
        with urllib.request.urlopen(call, timeout=HTTP_TIMEOUT) as response:
            return response.read()

    def get_json(self, path: str) -> Any:
        return json.loads(self.request("GET", path))

    def post_json(self, path: str, payload: Any) -> Any:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return json.loads(self.request("POST", path, body))

    def is_answering(self) -> bool:
        try:
            return self.get_json("/system")["DicomAet"] == self.ae_title
        except OSError:
            return False

    # ---- instances --------------------------------------------------------
    def upload(self, path: str | PathLike) -> str:
        """Store a Part 10 file through the REST API (not DICOM); its Orthanc ID."""
        answer = self.post_json("/instances", Path(path).read_bytes())
        assert answer["Status"] == "Success", answer
        return answer["ID"]

    def instance_ids(self) -> list[str]:
        return self.get_json("/instances")

    def instance_id(self, sop_instance_uid: str) -> str | None:
        """The Orthanc ID of the instance with this SOP Instance UID, or None."""
        found = self.post_json("/tools/lookup", sop_instance_uid.encode())
        return next((item["ID"] for item in found if item["Type"] == "Instance"), None)

    def instance_file(self, instance_id: str) -> bytes:
        """The Part 10 file Orthanc stores for the instance."""
        return self.request("GET", f"/instances/{instance_id}/file")

    def add_modality(self, modality: Modality) -> None:
        """Name one more DICOM node (or move an existing one) while Orthanc runs."""
        self.request("PUT", f"/modalities/{modality.ae_title}", json.dumps(modality.entry()).encode())

    def echo(self, modality: str) -> bool:
        """Orthanc, as SCU, sends a C-ECHO to a known modality; True on success."""
        try:
            self.request("POST", f"/modalities/{modality}/echo", b"{}")
        except OSError:
            return False
        return True


class OrthancStarter:
    """Starts Orthanc processes for one test (through its `PeerStarter`, which stops them)."""

    def __init__(self, peers: PeerStarter, directory: Path) -> None:
        self.peers = peers
        self.directory = directory
        self.count = 0

    def start(self, modalities: Iterable[Modality] = (), ae_title: str = DEFAULT_AE_TITLE, **settings: Any) -> Orthanc:
        """A running Orthanc titled `ae_title` that knows `modalities`; `settings` override its configuration."""
        binary = orthanc_binary()
        if binary is None:
            pytest.fail("Orthanc is not installed")
        folder = self.directory / f"orthanc-{self.count}"
        self.count += 1
        folder.mkdir()
        modalities = list(modalities)
        http_ports: dict[int, int] = {}

        def command(dicom_port: int) -> list[str]:
            http_ports[dicom_port] = pick_free_port()
            config = configuration(folder, dicom_port, http_ports[dicom_port], ae_title, modalities, settings)
            path = folder / f"orthanc-{dicom_port}.json"
            path.write_text(json.dumps(config, indent=2))
            return [binary, "--verbose", str(path)]

        peer = self.peers.start("orthanc", command, ORTHANC_READY_TIMEOUT)
        orthanc = Orthanc(peer, ae_title, http_ports[peer.port])
        if not wait_until(lambda: orthanc.is_answering() or not peer.is_running(), ORTHANC_READY_TIMEOUT, 0.05):
            pytest.fail(f"Orthanc's REST API did not answer within {ORTHANC_READY_TIMEOUT} s:\n{peer.output()}")
        if not peer.is_running():
            pytest.fail(f"Orthanc stopped while starting (its HTTP port taken?):\n{peer.output()}")
        return orthanc
