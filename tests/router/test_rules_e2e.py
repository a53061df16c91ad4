"""End to end through `router run`: the rules route, morph, drop and prefetch what DCMTK's storescu sends.

Each test writes a config (`tests.workers.harness.RouterSetup`) with the
listener on a free loopback port, runs `python -m router run CONFIG` (the
supervisor, one listener, one or two workers) as a process, sends instances
with DCMTK's storescu in their own transfer syntax, and looks at what the
destinations got: DCMTK storescp processes (bit-preserving) and folders. A
prefetch queries our qrscp or Orthanc as the Q/R source and moves to a DCMTK
storescp that the source knows. Every process is ended by its pid at teardown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pydicom
import pytest

from router.net import sop_class
from tests.conftest import LOOPBACK, REPO_ROOT, is_listening, our_app, peer_environment, pick_free_port, run_client
from tests.conftest import wait_until
from tests.interop import store_data
from tests.interop.orthanc import Modality
from tests.interop.test_qr_apps import dcmtk, write_config
from tests.interop.test_store_dcmtk import exact_contexts_config
from tests.router import test_listener
from tests.workers.harness import STORESCP_TITLE, RouterSetup, received, start_storescp, stored_files
from workers.jobs import JobKind
from workers.queue import Queue

pytestmark = [pytest.mark.timeout(90), pytest.mark.dcmtk]

root = test_listener.root  # a fixture: a short directory for the config and spool (ipc:// path limit)
ROUTER_READY_TIMEOUT = 20.0
ROUTER_STOP_TIMEOUT = 45.0  # the supervisor gives its children 40 s
ARRIVAL_TIMEOUT = 30.0
SEND_TIMEOUT = 60.0
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
PATIENT = "PAT-1"
CURRENT_STUDY = "1.2.826.0.1.3680043.8.498.900"
PRIORS = {  # StudyInstanceUID -> StudyDate; each prior has two instances
    "1.2.826.0.1.3680043.8.498.901": "20190304",
    "1.2.826.0.1.3680043.8.498.902": "20230611",
    "1.2.826.0.1.3680043.8.498.903": "20210120",
    "1.2.826.0.1.3680043.8.498.904": "20220905",
    "1.2.826.0.1.3680043.8.498.905": "20200707",
}
THREE_MOST_RECENT = {"1.2.826.0.1.3680043.8.498.902", "1.2.826.0.1.3680043.8.498.904", "1.2.826.0.1.3680043.8.498.903"}
WORKSTATION = STORESCP_TITLE  # the move destination's AE title
PRIVATE_CREATOR, PRIVATE_TAG, PRIVATE_VALUE = "ACME ROUTING", "(0029,1010)", "ROUTE-ME"


class RouterProcess:
    """`python -m router run CONFIG`: its listener on `port`, its log in a file; stopped by pid."""

    def __init__(self, setup: RouterSetup, port: int) -> None:
        self.setup = setup
        self.port = port
        self.log_path = setup.directory / "router.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "router", "run", str(setup.path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=peer_environment(),
            )
        workers = setup.router.get("workers", 1)
        ready = lambda: (is_listening(port) and self.output().count(": started") >= workers) or not self.running()  # noqa: E731
        assert wait_until(ready, ROUTER_READY_TIMEOUT, 0.05) and self.running(), f"the router did not start:\n{self.output()}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int:
        """SIGTERM; the exit code (bounded)."""
        if self.running():
            os.kill(self.process.pid, signal.SIGTERM)
        return self.process.wait(ROUTER_STOP_TIMEOUT)

    def kill(self) -> None:
        if self.running():
            os.kill(self.process.pid, signal.SIGKILL)  # its children get SIGTERM (PR_SET_PDEATHSIG)
            self.process.wait(ROUTER_STOP_TIMEOUT)


@pytest.fixture
def routers():
    """`routers(setup)` writes the config with the listener on a free port and runs the router."""
    started: list[RouterProcess] = []

    def start(setup: RouterSetup) -> RouterProcess:
        port = pick_free_port()
        setup.router.update({"listen": f"{LOOPBACK}:{port}", "durability": "flush"})
        setup.write()
        started.append(RouterProcess(setup, port))
        return started[-1]

    yield start
    for router in started:
        router.kill()


@pytest.fixture
def storescps(tmp_path):
    """`storescps(name)` -> (port, output folder) of a running DCMTK storescp; all stopped at teardown."""
    peers: list = []

    def start(name: str) -> tuple[int, Path]:
        port, out = pick_free_port(), tmp_path / name
        start_storescp(tmp_path, port, out, peers)
        return port, out

    yield start
    for peer in peers:
        peer.stop()


# ---- instances ----------------------------------------------------------------------------------------
def make_instance(directory: Path, name: str, modality: str = "CT", patient: str = "STORE-001", study: str = "",
                  study_date: str = "20240102", seed: int = 1, changes: dict | None = None) -> store_data.Instance:
    """A small image of `modality` (CT, MR or OT: a secondary capture), written in Explicit VR Little Endian."""
    dataset = store_data.small_ct(seed=seed)
    dataset.Modality = modality
    dataset.SOPClassUID = {"CT": sop_class.CTImageStorage, "MR": sop_class.MRImageStorage,
                           "OT": sop_class.SecondaryCaptureImageStorage}[modality]
    dataset.PatientID = patient
    dataset.StudyDate = study_date
    if study:
        dataset.StudyInstanceUID = study
    for keyword, value in (changes or {}).items():
        setattr(dataset, keyword, value)
    directory.mkdir(parents=True, exist_ok=True)
    return store_data.write_instance(dataset, store_data.SYNTAXES["explicit"], directory / f"{name}.dcm", store_data.SMALL)


def with_private_tag(instance: store_data.Instance) -> store_data.Instance:
    """The instance rewritten with a private creator and one private element in its block."""
    dataset = pydicom.dcmread(instance.path)
    block = dataset.private_block(0x0029, PRIVATE_CREATOR, create=True)
    block.add_new(0x10, "LO", PRIVATE_VALUE)
    dataset.save_as(instance.path, enforce_file_format=True)
    return instance


def send(tmp_path: Path, router: RouterProcess, instances: list[store_data.Instance], calling_ae: str = "MODALITY") -> None:
    """DCMTK's storescu sends each file in its own syntax, as `calling_ae`, on one association."""
    config, profile = exact_contexts_config(tmp_path / f"storescu-{calling_ae}.cfg", instances)
    command = [dcmtk("storescu"), "-aet", calling_ae, "-aec", "ROUTER", "-xf", config, profile, LOOPBACK, str(router.port)]
    result = run_client([*command, *(str(instance.path) for instance in instances)], timeout=SEND_TIMEOUT)
    assert result.returncode == 0, result.output


def uids(*instances: store_data.Instance) -> dict[str, int]:
    return {instance.sop_instance_uid: 1 for instance in instances}


def delivered(setup: RouterSetup, destination: str, kind: JobKind = JobKind.STORE) -> int:
    """How many jobs of the lane are done (a DCMTK storescp has then written each file whole)."""
    with closing(Queue(setup.spool)) as queue:
        counts = {(entry.destination, entry.kind): entry.delivered for entry in queue.counts(time.time())}
    return counts.get((destination, kind), 0)


def spool_empty(setup: RouterSetup) -> bool:
    return not list(setup.spool.accepted())


# ---- routing -----------------------------------------------------------------------------------------
def test_routing_by_modality_by_calling_ae_and_by_a_private_tag(routers, storescps, root, tmp_path):
    ct_port, ct_out = storescps("ct")
    mr_port, mr_out = storescps("mr")
    setup = RouterSetup(root)
    setup.dicom("ct", ct_port)
    setup.dicom("mr", mr_port)
    lab, flagged = setup.folder("lab"), setup.folder("flagged")
    setup.rules = [
        {"name": "CT", "when": {"Modality": "CT"}, "forward": ["ct"]},
        {"name": "MR", "when": {"Modality": "MR"}, "forward": ["mr"]},
        {"name": "from the lab", "when": {"calling_ae": {"glob": "LAB*"}}, "forward": ["lab"]},
        {"name": "flagged", "when": {PRIVATE_TAG: PRIVATE_VALUE}, "forward": ["flagged"]},
    ]
    router = routers(setup)
    data = tmp_path / "data"
    cts = [make_instance(data, f"ct-{index}", "CT", seed=index) for index in range(3)]
    mrs = [make_instance(data, f"mr-{index}", "MR", seed=10 + index) for index in range(2)]
    private_mr = with_private_tag(make_instance(data, "mr-private", "MR", seed=20))
    lab_ct = make_instance(data, "ct-lab", "CT", seed=30)

    send(tmp_path, router, [*cts, *mrs, private_mr])
    send(tmp_path, router, [lab_ct], calling_ae="LABCT1")

    expected = {ct_out: uids(*cts, lab_ct), mr_out: uids(*mrs, private_mr), lab: uids(lab_ct), flagged: uids(private_mr)}
    assert wait_until(lambda: all(received(folder) == want for folder, want in expected.items()), ARRIVAL_TIMEOUT), (
        router.output()
    )
    assert wait_until(lambda: spool_empty(setup), 10), router.output()
    for instance in (*cts, lab_ct):  # forwarded without morphs: the data set bit for bit
        assert store_data.data_digest(stored_files(ct_out)[instance.sop_instance_uid]) == store_data.data_digest(instance.path)
    assert router.stop() == 0


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # pydicom's, for the private class's leading zero
def test_private_and_newer_storage_classes_are_routed_like_any_other(routers, root, tmp_path):
    peers: list = []
    port, out = pick_free_port(), tmp_path / "pacs"
    start_storescp(tmp_path, port, out, peers, accepted=("+xa", "-pm"))  # -pm: DCMTK takes unknown classes too
    try:
        setup = RouterSetup(root)
        setup.dicom("pacs", port)
        setup.rules = [{"name": "everything", "forward": ["pacs"]}]
        router = routers(setup)
        sent = store_data.unlisted_class_files(tmp_path / "unlisted")

        send(tmp_path, router, sent)

        assert wait_until(lambda: received(out) == uids(*sent), ARRIVAL_TIMEOUT), router.output()
        for instance in sent:
            forwarded = stored_files(out)[instance.sop_instance_uid]
            assert store_data.data_digest(forwarded) == store_data.data_digest(instance.path)
            assert store_data.read_meta(forwarded).MediaStorageSOPClassUID == instance.sop_class_uid
        assert router.stop() == 0
    finally:
        for peer in peers:
            peer.stop()


def test_drop_leaves_nothing_to_deliver_and_empties_the_spool(routers, root, tmp_path):
    setup = RouterSetup(root)
    archive = setup.folder("archive")
    setup.rules = [
        {"name": "no captures from the CT lab", "when": {"sop_class": "SecondaryCaptureImageStorage", "calling_ae": "CTLAB"},
         "drop": True, "stop": True},
        {"name": "everything else", "forward": ["archive"]},
    ]
    router = routers(setup)
    data = tmp_path / "data"
    dropped = make_instance(data, "sc-lab", "OT", seed=1)
    lab_ct = make_instance(data, "ct-lab", "CT", seed=2)
    other_sc = make_instance(data, "sc-other", "OT", seed=3)

    send(tmp_path, router, [dropped, lab_ct], calling_ae="CTLAB")
    send(tmp_path, router, [other_sc], calling_ae="MODALITY")

    assert wait_until(lambda: received(archive) == uids(lab_ct, other_sc), ARRIVAL_TIMEOUT), router.output()
    assert wait_until(lambda: spool_empty(setup) and "dropped by the rules" in router.output(), 10), router.output()
    (line,) = [line for line in router.output().splitlines() if "dropped by the rules" in line]
    assert dropped.sop_instance_uid in line and "from=CTLAB" in line
    assert received(archive) == uids(lab_ct, other_sc)
    assert router.stop() == 0


# ---- morph -------------------------------------------------------------------------------------------
def test_morph_changes_the_forwarded_copy_only(routers, storescps, root, tmp_path):
    ai_port, ai_out = storescps("ai")
    setup = RouterSetup(root)
    setup.dicom("ai", ai_port)
    archive = setup.folder("archive")
    setup.dicom("held", pick_free_port())  # nothing listens: its jobs keep the spool files
    setup.rules = [
        {"name": "to the AI node", "when": {"calling_ae": "MODALITY"}, "forward": ["ai"], "morph": [
            {"set": {"InstitutionName": "Main Hospital"}},
            {"delete": ["OtherPatientIDs"]},
            {"replace": {"AccessionNumber": {"regex": "^ACC", "with": "MH"}}},
        ]},
        {"name": "kept as it came", "forward": ["archive", "held"]},
    ]
    router = routers(setup)
    ct = make_instance(tmp_path / "data", "ct", "CT", changes={"InstitutionName": "Old Name", "OtherPatientIDs": "OLD-7"})
    jpeg = store_data.jpeg_instance(tmp_path / "data")
    sent = [ct, jpeg]

    send(tmp_path, router, sent)

    assert wait_until(lambda: delivered(setup, "ai") == delivered(setup, "archive") == len(sent), ARRIVAL_TIMEOUT), (
        router.output()
    )
    assert received(ai_out) == received(archive) == uids(*sent)
    copies = stored_files(ai_out)
    for instance in sent:
        original, copy = pydicom.dcmread(instance.path), pydicom.dcmread(copies[instance.sop_instance_uid])
        assert copy.InstitutionName == "Main Hospital" and "OtherPatientIDs" not in copy
        assert copy.get("AccessionNumber", "") == original.get("AccessionNumber", "").replace("ACC", "MH", 1)
        assert copy.file_meta.TransferSyntaxUID == instance.transfer_syntax  # the instance's own syntax
        assert copy.PixelData == original.PixelData  # JPEG fragments included, byte for byte
    assert pydicom.dcmread(copies[ct.sop_instance_uid]).AccessionNumber == "MH0001"
    assert pydicom.dcmread(copies[jpeg.sop_instance_uid]).file_meta.TransferSyntaxUID == JPEG_BASELINE

    archived = stored_files(archive)
    spooled = {pydicom.dcmread(setup.spool.path_of(name), stop_before_pixels=True).SOPInstanceUID: setup.spool.path_of(name)
               for name in setup.spool.accepted()}
    for instance in sent:  # the copy without morphs and the spool file: the data set as sent
        assert store_data.data_digest(archived[instance.sop_instance_uid]) == store_data.data_digest(instance.path)
        assert store_data.data_digest(spooled[instance.sop_instance_uid]) == store_data.data_digest(instance.path)
    assert pydicom.dcmread(archived[ct.sop_instance_uid]).InstitutionName == "Old Name"
    assert router.stop() == 0


# ---- prefetch ----------------------------------------------------------------------------------------
def priors(directory: Path) -> dict[str, list[store_data.Instance]]:
    """Two instances of each prior study of the patient, the current study's first instance, another patient's study."""
    studies = {uid: [make_instance(directory, f"prior-{uid[-3:]}-{n}", "MR", PATIENT, uid, date, seed=n)
                     for n in range(2)] for uid, date in PRIORS.items()}
    studies[CURRENT_STUDY] = [make_instance(directory, "current-0", "MR", PATIENT, CURRENT_STUDY, "20240301")]
    studies["other patient"] = [make_instance(directory, "other-patient", "MR", "PAT-2", "", "20240201")]
    return studies


def prefetch_rules(setup: RouterSetup, source: str) -> Path:
    """Prefetch for MR instances from `source`, and forward everything to a folder (returned)."""
    archive = setup.folder("archive")
    setup.rules = [
        {"name": "priors for new MR studies", "when": {"Modality": "MR"}, "once_per": "study",
         "prefetch": {"from": source, "to": WORKSTATION, "match": {"PatientID": "{PatientID}"}, "studies": 3}},
        {"name": "everything", "forward": ["archive"]},
    ]
    return archive


def current_study(directory: Path, count: int) -> list[store_data.Instance]:
    return [make_instance(directory, f"new-{index}", "MR", PATIENT, CURRENT_STUDY, "20240301", seed=100 + index)
            for index in range(count)]


def moved_instances(library: dict[str, list[store_data.Instance]]) -> dict[str, int]:
    return uids(*(instance for uid in THREE_MOST_RECENT for instance in library[uid]))


def prefetch_lines(router: RouterProcess) -> list[str]:
    return [line for line in router.output().splitlines() if ": prefetch " in line]


def assert_one_prefetch(router: RouterProcess, setup: RouterSetup, source: str) -> None:
    assert wait_until(lambda: len(prefetch_lines(router)) == 1, 10), router.output()
    (line,) = prefetch_lines(router)
    for field in ("rule=\"priors for new MR studies\"", f"source={source}", f"to={WORKSTATION}", "found=5", "moved=3",
                  "status=delivered"):
        assert field in line, line
    with closing(Queue(setup.spool)) as queue:
        (prefetches,) = [entry for entry in queue.counts(time.time()) if entry.kind is JobKind.PREFETCH]
    assert (prefetches.destination, prefetches.delivered, prefetches.queued, prefetches.dead) == (source, 1, 0, 0)


def test_prefetch_from_our_qrscp_fires_once_per_study(routers, storescps, peers, root, tmp_path):
    workstation_port, workstation = storescps("workstation")
    library = priors(tmp_path / "pacs")
    config = write_config(tmp_path / "qrscp.ini", tmp_path / "pacs", {WORKSTATION: workstation_port})
    qrscp = peers.start("qrscp", lambda port: our_app("qrscp", "-c", str(config), "--port", str(port), "-v"))
    setup = RouterSetup(root, router={"workers": 2})
    setup.dicom("pacs", qrscp.port, ae_title="QRSCP")
    archive = prefetch_rules(setup, "pacs")
    router = routers(setup)
    new = current_study(tmp_path / "new", 200)

    send(tmp_path, router, new)

    assert wait_until(lambda: received(workstation) == moved_instances(library), ARRIVAL_TIMEOUT), router.output()
    assert wait_until(lambda: len(received(archive)) == len(new) and spool_empty(setup), ARRIVAL_TIMEOUT)
    assert_one_prefetch(router, setup, "pacs")
    assert qrscp.output().count("Received Move Request") == 3  # one C-MOVE per chosen study, once
    assert qrscp.output().count("Received Find Request") == 1
    assert router.output().count("worker-1: started") == 1  # two workers shared the 200 instances
    assert router.stop() == 0
    assert received(workstation) == moved_instances(library)


@pytest.mark.orthanc
def test_prefetch_from_orthanc(routers, storescps, orthanc, root, tmp_path):
    workstation_port, workstation = storescps("workstation")
    pacs = orthanc.start(modalities=[Modality("ROUTER")])
    pacs.add_modality(Modality(WORKSTATION, workstation_port))
    library = priors(tmp_path / "pacs")
    for instances in library.values():
        for instance in instances:
            pacs.upload(instance.path)
    setup = RouterSetup(root)
    setup.dicom("orthanc", pacs.port, ae_title=pacs.ae_title)
    archive = prefetch_rules(setup, "orthanc")
    router = routers(setup)
    new = current_study(tmp_path / "new", 5)

    send(tmp_path, router, new)

    assert wait_until(lambda: received(workstation) == moved_instances(library), ARRIVAL_TIMEOUT), router.output()
    assert wait_until(lambda: len(received(archive)) == len(new) and spool_empty(setup), ARRIVAL_TIMEOUT)
    assert_one_prefetch(router, setup, "orthanc")
    assert router.stop() == 0
