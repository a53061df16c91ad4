"""The Storage service in process: our AE as SCU and as SCP over loopback.

What the SCP's EVT_C_STORE handler is given (the request, the context, a
data set decoded only when read, the file meta, the bytes exactly as sent),
how its answer becomes the SCU's status, the SCU's error when no context
fits, and where a large data set goes: spooled to `ae.spool_directory` past
`ae.spool_threshold`, renamed by `save_as` (copied only onto another file
system, or when saved a second time), removed when the handler does not keep
it or the association ends mid data set. An SCP that aborts mid data set ends
the SCU's call at once. Pipelined C-STOREs (`send_c_stores`): the window the
acceptor allows is the one the requestor uses, requests really go ahead of the
responses, outcomes come back in order, and without a window it is one at a time.
A file cut short is never sent: `send_c_store` raises a ValueError, `send_c_stores`
yields NotWhole for it and sends the rest; one cut where its pixel data ends is whole.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import resource
import shutil
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from router.net import AE, evt
from router.net.acceptor import allow_outstanding
from router.net.pdu_items import AsyncOperationsWindow
from router.net.contexts import accept_all_storage
from router.net.dimse_messages import CStoreRSP, Priority
from router.net.received import ReadyFile, ReceivedDataset
from router.net.services.storage import c_store_response
from router.net.sources import DatasetSource, source_for
from router.net.sources import _read_meta as read_meta
from router.net.status import CANNOT_UNDERSTAND, SUCCESS
from router.net.whole_file import NotWhole
from tests.conftest import LOOPBACK, wait_until
from tests.interop import store_data
from tests.interop.store_data import CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, SYNTAXES

SCU_TITLE = "STORESCU"
SCP_TITLE = "STORESCP"
SMALL_THRESHOLD = 64 << 10  # 64 KiB: the 0.5 MB MR spools, the 10 KB CT does not
PROMPTLY = 1.0  # seconds: an answer that needs no timer to expire
CLEANUP_WITHIN = 5.0
PART_SUFFIX = ".dcm.part"
HANDLER_FAILED = 0xC210
NO_HANDLER = 0xC211
WARNING_COERCION = 0xB000
WARNING_DOES_NOT_MATCH = 0xB007
OUT_OF_RESOURCES = 0xA700


# ---- helpers ---------------------------------------------------------------------------
class StoreHandler:
    """An EVT_C_STORE handler: `observe(event)` runs on the server's thread, then `answer`.

    Observations are kept in `seen`; an exception raised while observing is
    kept too and re-raised by `check()` on the test's thread.
    """

    def __init__(self, observe: Callable[[evt.Event], Any] | None = None, answer: Any = SUCCESS) -> None:
        self.observe = observe or (lambda event: None)
        self.answer = answer
        self.seen: list[Any] = []
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()

    def __call__(self, event: evt.Event) -> Any:
        try:
            observed = self.observe(event)
        except Exception as exc:  # report it on the test's thread
            with self.lock:
                self.errors.append(exc)
            raise
        with self.lock:
            self.seen.append(observed)
        return self.answer(event) if callable(self.answer) else self.answer

    def check(self) -> None:
        if self.errors:
            raise self.errors[0]


def scp_ae(spool_directory: Path | None = None, threshold: int | None = None) -> AE:
    ae = AE(SCP_TITLE)
    accept_all_storage(ae)
    ae.acse_timeout = ae.dimse_timeout = 10
    ae.network_timeout = 30
    if spool_directory is not None:
        ae.spool_directory = str(spool_directory)
    if threshold is not None:
        ae.spool_threshold = threshold
    return ae


def scu_ae(contexts: list[tuple[str, list[str]]]) -> AE:
    ae = AE(SCU_TITLE)
    for abstract_syntax, syntaxes in contexts:
        ae.add_requested_context(abstract_syntax, syntaxes)
    ae.acse_timeout = ae.dimse_timeout = 10
    ae.network_timeout = 30
    ae.connection_timeout = 5
    return ae


class StorePair:
    """Our SCP (in-process server) and our SCU, connected by `associate`."""

    def __init__(self, our_server, tmp_path: Path) -> None:
        self.our_server = our_server
        self.spool = tmp_path / "spool"
        self.spool.mkdir()
        self.stored = tmp_path / "stored"
        self.stored.mkdir()
        self.associations = []

    def serve(
        self, handler: Callable | None = None, threshold: int | None = None, ae: AE | None = None, also: tuple = ()
    ) -> AE:
        """Our SCP with `handler` bound to EVT_C_STORE and the `also` (event, handler) pairs."""
        ae = ae or scp_ae(self.spool, threshold)
        handlers = ([] if handler is None else [(evt.EVT_C_STORE, handler)]) + list(also)
        self.server = self.our_server.start(ae, evt_handlers=handlers)
        self.scp = ae
        return ae

    def associate(self, contexts: list[tuple[str, list[str]]] | None = None, ext_neg=(), evt_handlers=()):
        # One context per class and syntax: an acceptor accepts one syntax per context.
        if contexts is None:
            contexts = [(uid, [ts]) for uid in (CT_IMAGE_STORAGE, MR_IMAGE_STORAGE) for ts in SYNTAXES.values()]
        assoc = scu_ae(contexts).associate(
            LOOPBACK, self.server.server_address[1], ae_title=SCP_TITLE, ext_neg=list(ext_neg), evt_handlers=list(evt_handlers)
        )
        assert assoc.is_established
        self.associations.append(assoc)
        return assoc

    def spool_files(self) -> list[Path]:
        return sorted(self.spool.iterdir())

    def close(self) -> None:
        for assoc in self.associations:
            if assoc.is_established:
                assoc.abort()


@pytest.fixture
def pair(our_server, tmp_path):
    pair = StorePair(our_server, tmp_path)
    try:
        yield pair
    finally:
        pair.close()


@pytest.fixture(scope="module")
def instances(tmp_path_factory):
    """Small and typical instances in each uncompressed syntax (no 50 MB one here)."""
    library = store_data.library(tmp_path_factory)
    kinds = (store_data.SMALL, store_data.TYPICAL)
    return {name: {i.kind: i for i in library.get(name, kinds)} for name in SYNTAXES}


def encoded_like_pydicom(ds: Dataset, syntax: str) -> bytes:
    """What `ds` is in `syntax`, by pydicom's own Part 10 writer (the file meta cut off)."""
    ds = ds.copy()
    ds.file_meta = store_data.file_meta_for(ds, syntax)
    buffer = BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return store_data.split_encoded(buffer.getvalue())[1]


def stored_view(event: evt.Event) -> dict[str, Any]:
    """What a handler can see without decoding the data set."""
    return {
        "with_meta": event.encoded_dataset(include_meta=True),
        "without_meta": event.encoded_dataset(include_meta=False),
        "context_syntax": str(event.context.transfer_syntax[0]),
        "context_abstract": str(event.context.abstract_syntax),
        "request": event.request,
    }


# ---- sending a path or a Dataset ----------------------------------------------------------
@pytest.mark.parametrize("syntax_name", list(SYNTAXES))
def test_a_path_arrives_bit_for_bit_in_its_own_syntax(pair, instances, syntax_name):
    handler = StoreHandler(stored_view)
    pair.serve(handler)
    assoc = pair.associate()

    for kind in (store_data.SMALL, store_data.TYPICAL):
        instance = instances[syntax_name][kind]
        status = assoc.send_c_store(instance.path)
        assert status.Status == SUCCESS

    assoc.release()
    handler.check()
    assert len(handler.seen) == 2
    for kind, seen in zip((store_data.SMALL, store_data.TYPICAL), handler.seen):
        instance = instances[syntax_name][kind]
        sent = store_data.data_part(instance.path)
        assert seen["without_meta"] == sent
        header, data = store_data.split_encoded(seen["with_meta"])
        assert data == sent
        assert header.startswith(b"\0" * 128 + b"DICM")
        assert seen["context_syntax"] == SYNTAXES[syntax_name]
        assert seen["context_abstract"] == instance.sop_class_uid
        assert seen["request"].affected_sop_instance_uid == instance.sop_instance_uid


@pytest.mark.parametrize("syntax_name", list(SYNTAXES))
def test_a_dataset_is_sent_in_the_syntax_its_file_meta_names(pair, syntax_name):
    handler = StoreHandler(stored_view)
    pair.serve(handler)
    assoc = pair.associate()
    ds = store_data.small_ct(seed=11)
    ds.file_meta = store_data.file_meta_for(ds, SYNTAXES[syntax_name])

    status = assoc.send_c_store(ds)

    assoc.release()
    handler.check()
    assert status.Status == SUCCESS
    (seen,) = handler.seen
    assert seen["context_syntax"] == SYNTAXES[syntax_name]
    assert seen["without_meta"] == encoded_like_pydicom(ds, SYNTAXES[syntax_name])


def test_a_dataset_without_file_meta_is_sent_implicit_vr_little_endian(pair):
    handler = StoreHandler(stored_view)
    pair.serve(handler)
    assoc = pair.associate()
    ds = store_data.small_ct(seed=12)

    status = assoc.send_c_store(ds)

    assoc.release()
    handler.check()
    assert status.Status == SUCCESS
    (seen,) = handler.seen
    assert seen["context_syntax"] == ImplicitVRLittleEndian
    assert seen["without_meta"] == encoded_like_pydicom(ds, ImplicitVRLittleEndian)


# ---- what the handler is given ----------------------------------------------------------
@pytest.fixture
def count_decodes(monkeypatch):
    """Counts the decodes `event.dataset` makes (pydicom's dcmread as the event module calls it)."""
    calls = []
    original = evt.dcmread

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(evt, "dcmread", counting)
    return calls


def test_the_data_set_is_not_decoded_unless_the_handler_reads_it(pair, instances, count_decodes):
    saved = pair.stored / "saved.dcm"
    handler = StoreHandler(lambda event: (event.encoded_dataset(), event.save_as(saved)))
    pair.serve(handler)
    assoc = pair.associate()

    status = assoc.send_c_store(instances["explicit"][store_data.SMALL].path)

    assoc.release()
    handler.check()
    assert status.Status == SUCCESS
    assert count_decodes == []
    assert store_data.data_part(saved) == store_data.data_part(instances["explicit"][store_data.SMALL].path)


def test_the_data_set_is_decoded_once_when_read(pair, instances, count_decodes):
    def observe(event):
        first = event.dataset
        return first, event.dataset, event.file_meta

    handler = StoreHandler(observe)
    pair.serve(handler)
    assoc = pair.associate()
    instance = instances["implicit"][store_data.SMALL]

    assoc.send_c_store(instance.path)

    assoc.release()
    handler.check()
    (first, second, meta) = handler.seen[0]
    assert len(count_decodes) == 1
    assert first is second
    assert first == pydicom.dcmread(instance.path)
    assert meta.MediaStorageSOPInstanceUID == instance.sop_instance_uid


def test_file_meta_reads_the_file_header_alone_not_the_data_set(pair, instances, count_decodes):
    """A handler that only checks the file meta must not pull a spooled instance into memory."""
    instance = instances["explicit"][store_data.TYPICAL]
    handler = StoreHandler(lambda event: (event.file_meta, event.received.file_header, event.file_meta))
    pair.serve(handler, threshold=SMALL_THRESHOLD)
    assoc = pair.associate()

    assoc.send_c_store(instance.path)

    assoc.release()
    handler.check()
    meta, header, again = handler.seen[0]
    assert meta is again
    assert meta.MediaStorageSOPInstanceUID == instance.sop_instance_uid
    assert meta.TransferSyntaxUID == SYNTAXES["explicit"]
    assert [call[0].getvalue() for call in count_decodes] == [header]  # one decode, of the header's bytes
    assert len(header) < 512


def test_the_file_meta_read_first_is_the_decoded_data_set_s(pair, instances):
    handler = StoreHandler(lambda event: (event.file_meta, event.dataset.file_meta))
    pair.serve(handler)
    assoc = pair.associate()

    assoc.send_c_store(instances["implicit"][store_data.SMALL].path)

    assoc.release()
    handler.check()
    first, later = handler.seen[0]
    assert first is later


@pytest.mark.parametrize("syntax_name", list(SYNTAXES))
def test_file_meta_of_the_received_instance(pair, instances, syntax_name):
    handler = StoreHandler(lambda event: (event.file_meta, event.encoded_dataset(include_meta=True)))
    scp = pair.serve(handler)
    assoc = pair.associate()
    instance = instances[syntax_name][store_data.SMALL]

    assoc.send_c_store(instance.path)

    assoc.release()
    handler.check()
    meta, encoded = handler.seen[0]
    assert meta.FileMetaInformationVersion == b"\x00\x01"
    assert meta.MediaStorageSOPClassUID == instance.sop_class_uid
    assert meta.MediaStorageSOPInstanceUID == instance.sop_instance_uid
    assert meta.TransferSyntaxUID == SYNTAXES[syntax_name]
    assert meta.ImplementationClassUID == scp.implementation_class_uid
    assert meta.ImplementationVersionName == scp.implementation_version_name
    assert meta.SourceApplicationEntityTitle == SCU_TITLE
    reread = pydicom.dcmread(BytesIO(encoded))  # a valid Part 10 file as it stands
    assert reread.file_meta == meta
    assert reread.file_meta.FileMetaInformationGroupLength == len(store_data.split_encoded(encoded)[0]) - 132 - 12


def test_request_fields_reach_the_scp(pair, instances):
    handler = StoreHandler(lambda event: event.request)
    pair.serve(handler)
    assoc = pair.associate()
    instance = instances["explicit"][store_data.SMALL]

    moved = assoc.send_c_store(instance.path, msg_id=42, priority=Priority.HIGH, originator_aet="MOVESCU", originator_id=7)
    plain = assoc.send_c_store(instance.path)

    assoc.release()
    handler.check()
    assert moved.Status == plain.Status == SUCCESS
    with_originator, without = handler.seen
    assert with_originator.message_id == 42
    assert with_originator.priority == Priority.HIGH
    assert with_originator.move_originator_application_entity_title == "MOVESCU"
    assert with_originator.move_originator_message_id == 7
    assert with_originator.affected_sop_class_uid == instance.sop_class_uid
    assert with_originator.affected_sop_instance_uid == instance.sop_instance_uid
    assert without.priority == Priority.LOW  # send_c_store's default, 2
    assert not without.move_originator_application_entity_title
    assert without.move_originator_message_id is None


# ---- the handler's answer ------------------------------------------------------------------
def status_dataset(status: int, comment: str | None = None) -> Dataset:
    ds = Dataset()
    ds.Status = status
    if comment is not None:
        ds.ErrorComment = comment
    return ds


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(status_dataset(SUCCESS), SUCCESS, id="dataset-success"),
        pytest.param(status_dataset(WARNING_COERCION, "coerced"), WARNING_COERCION, id="dataset-warning"),
        pytest.param(status_dataset(OUT_OF_RESOURCES), OUT_OF_RESOURCES, id="dataset-failure"),
        pytest.param(SUCCESS, SUCCESS, id="int-success"),
        pytest.param(WARNING_DOES_NOT_MATCH, WARNING_DOES_NOT_MATCH, id="int-warning"),
        pytest.param(OUT_OF_RESOURCES, OUT_OF_RESOURCES, id="int-failure"),
    ],
)
def test_the_handler_answer_is_the_status_the_scu_sees(pair, instances, answer, expected):
    pair.serve(StoreHandler(answer=answer))
    assoc = pair.associate()

    status = assoc.send_c_store(instances["implicit"][store_data.SMALL].path)

    assert status.Status == expected
    assoc.release()


def test_c_store_response_is_the_response_message_with_its_status_and_comment(pair, instances):
    pair.serve(StoreHandler(answer=status_dataset(OUT_OF_RESOURCES, "disk full")))
    assoc = pair.associate()
    instance = instances["explicit"][store_data.SMALL]

    response = c_store_response(assoc, instance.path)

    assert isinstance(response, CStoreRSP)
    assert (response.status, response.error_comment) == (OUT_OF_RESOURCES, "disk full")
    assert response.affected_sop_instance_uid == instance.sop_instance_uid
    assoc.release()


@pytest.mark.parametrize("kind, in_memory", [(store_data.SMALL, True), (store_data.TYPICAL, False)])
def test_a_file_below_read_whole_below_is_read_at_once_and_sent_alike(pair, instances, kind, in_memory):
    handler = StoreHandler(stored_view)
    pair.serve(handler)
    assoc = pair.associate()
    instance = instances["explicit"][kind]

    source = source_for(instance.path, read_whole_below=64 << 10)
    assert (source.data is not None) is in_memory and source.path == str(instance.path)
    assert b"".join(bytes(block) for block in source.blocks()) == store_data.data_part(instance.path)
    assert source.length == len(store_data.data_part(instance.path))
    assert assoc.send_c_store(source).Status == SUCCESS

    assoc.release()
    handler.check()
    assert handler.seen[0]["without_meta"] == store_data.data_part(instance.path)


def test_a_raising_handler_answers_0xC210_and_the_association_goes_on(pair, instances):
    calls = []

    def answer(event):
        calls.append(event.request.message_id)
        if len(calls) == 1:
            raise RuntimeError("the archive is on fire")
        return SUCCESS

    pair.serve(StoreHandler(answer=answer))
    assoc = pair.associate()
    path = instances["implicit"][store_data.SMALL].path

    failed = assoc.send_c_store(path)
    stored = assoc.send_c_store(path)

    assert failed.Status == HANDLER_FAILED
    assert stored.Status == SUCCESS
    assert assoc.is_established
    assoc.release()


def test_without_a_handler_the_scu_gets_0xC211_promptly(pair, instances):
    pair.serve(handler=None)
    assoc = pair.associate()

    start = time.monotonic()
    status = assoc.send_c_store(instances["implicit"][store_data.SMALL].path)
    elapsed = time.monotonic() - start

    assert status.Status == NO_HANDLER
    assert elapsed < PROMPTLY, f"0xC211 took {elapsed:.2f} s"
    assert assoc.is_established
    assoc.release()


# ---- the SCU's own errors --------------------------------------------------------------------
def test_value_error_when_the_file_syntax_was_not_accepted(pair, instances):
    pair.serve(StoreHandler())
    assoc = pair.associate([(CT_IMAGE_STORAGE, [ExplicitVRLittleEndian])])

    with pytest.raises(ValueError) as raised:
        assoc.send_c_store(instances["implicit"][store_data.SMALL].path)

    assert str(raised.value) == (
        "No presentation context for 'CT Image Storage' has been accepted by the peer "
        "with 'Implicit VR Little Endian' transfer syntax for the SCU role"
    )
    assert assoc.is_established  # nothing was sent: the association is still usable
    assert assoc.send_c_store(instances["explicit"][store_data.SMALL].path).Status == SUCCESS
    assoc.release()


def test_value_error_when_the_sop_class_was_not_accepted(pair, instances):
    pair.serve(StoreHandler())
    assoc = pair.associate([(CT_IMAGE_STORAGE, [ImplicitVRLittleEndian])])

    with pytest.raises(ValueError, match="No presentation context for 'MR Image Storage'"):
        assoc.send_c_store(instances["implicit"][store_data.TYPICAL].path)
    assoc.release()


# ---- spooling --------------------------------------------------------------------------------
def spool_snapshot(spool: Path) -> Callable[[evt.Event], list[tuple[str, int]]]:
    """Observe which files the spool folder holds while the handler runs."""
    return lambda event: [(path.name, path.stat().st_size) for path in sorted(spool.iterdir())]


def test_a_data_set_below_the_threshold_is_not_spooled(pair, instances):
    handler = StoreHandler(spool_snapshot(pair.spool))
    pair.serve(handler, threshold=SMALL_THRESHOLD)
    assoc = pair.associate()

    assert assoc.send_c_store(instances["explicit"][store_data.SMALL].path).Status == SUCCESS

    assoc.release()
    handler.check()
    assert handler.seen == [[]]


@pytest.mark.parametrize("syntax_name", list(SYNTAXES))
def test_a_large_data_set_is_spooled_and_save_as_renames_it(pair, instances, syntax_name):
    instance = instances[syntax_name][store_data.TYPICAL]
    target = pair.stored / f"{instance.sop_instance_uid}.dcm"

    def observe(event):
        spooled = sorted(pair.spool.iterdir())
        before = [os.stat(path) for path in spooled]
        event.save_as(target)
        after = os.stat(target)
        return spooled, before, after, sorted(pair.spool.iterdir())

    handler = StoreHandler(observe)
    pair.serve(handler, threshold=SMALL_THRESHOLD)
    assoc = pair.associate()

    status = assoc.send_c_store(instance.path)

    assoc.release()
    handler.check()
    assert status.Status == SUCCESS
    spooled, before, after, left = handler.seen[0]
    assert len(spooled) == 1 and spooled[0].name.endswith(PART_SUFFIX), spooled
    assert (after.st_ino, after.st_dev) == (before[0].st_ino, before[0].st_dev)  # a rename, not a copy
    assert left == []
    assert store_data.data_part(target) == store_data.data_part(instance.path)
    meta = store_data.read_meta(target)
    assert meta.MediaStorageSOPInstanceUID == instance.sop_instance_uid
    assert meta.TransferSyntaxUID == SYNTAXES[syntax_name]
    assert pair.spool_files() == []


def test_a_spooled_data_set_reads_like_one_in_memory(pair, instances):
    instance = instances["deflated"][store_data.TYPICAL]
    handler = StoreHandler(lambda event: (len(list(pair.spool.iterdir())), event.encoded_dataset(False), event.dataset))
    pair.serve(handler, threshold=SMALL_THRESHOLD)
    assoc = pair.associate()

    assert assoc.send_c_store(instance.path).Status == SUCCESS

    assoc.release()
    handler.check()
    spooled, encoded, dataset = handler.seen[0]
    assert spooled == 1
    assert encoded == store_data.data_part(instance.path)
    assert dataset == pydicom.dcmread(instance.path)
    assert dataset.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    assert pair.spool_files() == []


def _raise(event):
    raise RuntimeError("handler failed after looking")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(SUCCESS, SUCCESS, id="answers-without-saving"),
        pytest.param(_raise, HANDLER_FAILED, id="raises"),
    ],
)
def test_an_unsaved_spool_file_is_removed_after_the_handler(pair, instances, answer, expected):
    handler = StoreHandler(spool_snapshot(pair.spool), answer=answer)
    pair.serve(handler, threshold=SMALL_THRESHOLD)
    assoc = pair.associate()

    status = assoc.send_c_store(instances["implicit"][store_data.TYPICAL].path)

    assert status.Status == expected
    assert pair.spool_files() == []  # already gone when the response arrived
    assoc.release()
    handler.check()
    ((name, _),) = handler.seen[0]
    assert name.endswith(PART_SUFFIX)


def test_without_a_handler_a_spooled_data_set_is_removed(pair, instances):
    pair.serve(handler=None, threshold=SMALL_THRESHOLD)
    assoc = pair.associate()

    status = assoc.send_c_store(instances["implicit"][store_data.TYPICAL].path)

    assert status.Status == NO_HANDLER
    assert pair.spool_files() == []
    assoc.release()


# ---- an association that ends mid data set --------------------------------------------------
class CutShort(Exception):
    """Raised by the test's data source once the association has been cut."""


def interrupted_source(path: Path, cut: Callable[[], None], after_blocks: int = 4, block: int = 32 << 10) -> DatasetSource:
    """The file's source, whose blocks stop after `after_blocks`: `cut()` runs, then CutShort."""
    source = source_for(path)

    def blocks(size: int = block):
        for index, piece in enumerate(DatasetSource.blocks(source, block)):
            if index == after_blocks:
                cut()
                raise CutShort
            yield piece

    source.blocks = blocks  # type: ignore[method-assign]
    return source


def wait_for_part_file(spool: Path) -> None:
    assert wait_until(lambda: any(p.name.endswith(PART_SUFFIX) for p in spool.iterdir()), CLEANUP_WITHIN), (
        "the receiver never spooled the data set"
    )


@pytest.mark.parametrize("how", ["a-abort", "connection-lost"])
def test_an_association_cut_mid_data_set_leaves_no_part_file(pair, instances, how):
    handler = StoreHandler()
    ended = threading.Event()
    scp = pair.serve(handler, threshold=SMALL_THRESHOLD)
    pair.server.handlers.bind(evt.EVT_CONN_CLOSE, lambda event: ended.set())
    assoc = pair.associate()

    def cut():
        wait_for_part_file(pair.spool)
        if how == "a-abort":
            assoc.abort()
        else:
            assoc.link.close()  # the TCP connection drops without an A-ABORT

    with pytest.raises(CutShort):
        assoc.send_c_store(interrupted_source(instances["explicit"][store_data.TYPICAL].path, cut))

    assert ended.wait(CLEANUP_WITHIN), "the server did not see the association end"
    assert wait_until(lambda: pair.spool_files() == [], CLEANUP_WITHIN), pair.spool_files()
    assert handler.seen == []
    assert wait_until(lambda: scp.active_associations == [], CLEANUP_WITHIN)


def test_server_shutdown_mid_data_set_leaves_no_part_file(pair, instances):
    scp = pair.serve(StoreHandler(), threshold=SMALL_THRESHOLD)
    assoc = pair.associate()

    def cut():
        wait_for_part_file(pair.spool)
        scp.shutdown()  # aborts the association it is receiving on

    with pytest.raises(CutShort):
        assoc.send_c_store(interrupted_source(instances["explicit"][store_data.TYPICAL].path, cut))

    assert wait_until(lambda: pair.spool_files() == [], CLEANUP_WITHIN), pair.spool_files()


@pytest.fixture
def other_file_system(tmp_path):
    """A folder on another file system than the test's (tmpfs), removed afterwards."""
    candidate = Path("/dev/shm")
    if not candidate.is_dir() or candidate.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no folder on another file system than the test's")
    folder = Path(tempfile.mkdtemp(prefix="store-test-", dir=candidate))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_save_as_onto_another_file_system_moves_the_spool_file(pair, instances, other_file_system):
    instance = instances["explicit"][store_data.TYPICAL]
    target = other_file_system / f"{instance.sop_instance_uid}.dcm"
    handler = StoreHandler(lambda event: event.save_as(target))
    pair.serve(handler, threshold=SMALL_THRESHOLD)
    assoc = pair.associate()

    status = assoc.send_c_store(instance.path)

    assoc.release()
    handler.check()
    assert status.Status == SUCCESS
    assert store_data.data_part(target) == store_data.data_part(instance.path)
    assert store_data.read_meta(target).MediaStorageSOPInstanceUID == instance.sop_instance_uid
    assert pair.spool_files() == []


def files_made_ahead(folder: Path) -> int:
    """Files without a name this process holds open in `folder` (/proc shows them as '#inode (deleted)')."""
    count = 0
    for entry in os.scandir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(entry.path).startswith(f"{folder}/#")
    return count


def save_into(folders: list[Path]) -> Callable[[evt.Event], list[int]]:
    """A handler that saves the n-th instance into `folders[n]`, having first observed how many
    files are made ahead in each of those folders (in the order they first come)."""
    count, distinct = iter(range(len(folders))), list(dict.fromkeys(folders))

    def observe(event: evt.Event) -> list[int]:
        seen = [files_made_ahead(folder) for folder in distinct]
        event.save_as(folders[next(count)] / f"{event.request.affected_sop_instance_uid}.dcm")
        return seen

    return observe


def send_saved_into(pair: StorePair, instances, folders: list[Path]) -> list[list[int]]:
    """Small instances (alternately two, then again) over one association to our SCP, which saves
    the n-th into `folders[n]`: what its handler observed before each save; each file is checked
    there bit for bit and no file is left open after the release."""
    handler = StoreHandler(save_into(folders))
    pair.serve(handler, threshold=SMALL_THRESHOLD)
    assoc = pair.associate()
    sent = [instances[("implicit", "explicit")[n % 2]][store_data.SMALL] for n in range(len(folders))]

    assert [assoc.send_c_store(instance.path).Status for instance in sent] == [SUCCESS] * len(sent)

    assoc.release()
    handler.check()
    for folder, instance in zip(folders, sent):
        assert store_data.data_part(folder / f"{instance.sop_instance_uid}.dcm") == store_data.data_part(instance.path)
    for folder in folders:
        assert not [path.name for path in folder.iterdir() if not path.name.endswith(".dcm")]
        wait_until(lambda: files_made_ahead(folder) == 0, CLEANUP_WITHIN)  # closed with the association
    return handler.seen


def test_instances_after_the_first_are_saved_into_a_file_made_ahead(pair, instances):
    """Creating a file is a disk's costly part of saving a small instance: after answering one, the
    association makes the next one's file, without a name, in the folder it saved into; saving the
    next instance there writes it and links it under its name."""
    seen = send_saved_into(pair, instances, [pair.stored] * 3)

    assert seen == [[0], [1], [1]]  # the first is saved the usual way


def test_a_save_into_another_folder_drops_the_file_made_ahead(pair, instances, other_file_system):
    first, second = pair.stored, other_file_system
    seen = send_saved_into(pair, instances, [first, first, second, second, first])

    assert seen == [[0, 0], [1, 0], [1, 0], [0, 1], [0, 1]]


def test_a_file_made_ahead_gets_the_group_of_the_folder_it_is_saved_into(pair, instances):
    """A setgid folder gives its group to the files created in it: also to one made ahead, which is
    made in the folder it will be named in, not in the spool."""
    if os.geteuid() != 0:
        pytest.skip("giving a folder a group of another user's needs root")
    group = os.getegid() + 4242
    os.chown(pair.stored, -1, group)
    pair.stored.chmod(0o2775)

    send_saved_into(pair, instances, [pair.stored] * 3)

    assert {path.stat().st_gid for path in pair.stored.iterdir()} == {group}


def test_a_file_made_ahead_is_not_linked_over_a_file_already_there(tmp_path):
    target = tmp_path / "instance.dcm"
    target.write_bytes(b"the copy acknowledged before")
    ready = ReadyFile()
    for resent in (b"first resend", b"second resend"):
        ready.take(target)
        ready.refill()  # as after an earlier instance's answer
        received = ReceivedDataset(file_header=b"H" * 132, parts=[memoryview(resent)], length=len(resent), ready=ready)
        received.save_as(target)  # the name is taken: written beside it and renamed over it
        assert target.read_bytes() == b"H" * 132 + resent
        assert sorted(path.name for path in tmp_path.iterdir()) == ["instance.dcm"]
    ready.take(target)
    ready.refill()
    assert files_made_ahead(tmp_path) == 1  # a name already taken does not stop the files made ahead
    ready.stop()
    assert files_made_ahead(tmp_path) == 0


def test_a_ready_file_is_made_only_once_one_was_taken_and_until_stopped(tmp_path):
    ready = ReadyFile()
    ready.refill()
    assert files_made_ahead(tmp_path) == 0  # no folder yet
    assert ready.take(tmp_path / "a.dcm") is None  # the first save teaches it the folder
    ready.refill()
    assert files_made_ahead(tmp_path) == 1 and list(tmp_path.iterdir()) == []
    ready.refill()
    assert files_made_ahead(tmp_path) == 1  # one at a time
    ready.stop()
    assert files_made_ahead(tmp_path) == 0
    assert ready.take(tmp_path / "b.dcm") is None
    ready.refill()
    assert files_made_ahead(tmp_path) == 0


@pytest.mark.parametrize("kind", [store_data.SMALL, store_data.TYPICAL], ids=["in-memory", "spooled"])
def test_save_as_twice_keeps_both_files(pair, instances, kind):
    instance = instances["implicit"][kind]
    first, second = pair.stored / "first.dcm", pair.stored / "second.dcm"

    def observe(event):
        event.save_as(first)
        event.save_as(second)
        return len(list(pair.spool.iterdir()))

    handler = StoreHandler(observe)
    pair.serve(handler, threshold=SMALL_THRESHOLD)
    assoc = pair.associate()

    assert assoc.send_c_store(instance.path).Status == SUCCESS

    assoc.release()
    handler.check()
    sent = store_data.data_part(instance.path)
    assert store_data.data_part(first) == sent
    assert store_data.data_part(second) == sent
    assert first.read_bytes() == second.read_bytes()
    assert pair.spool_files() == []


def test_a_data_set_the_scp_cannot_spool_gets_out_of_resources_and_the_association_goes_on(pair, tmp_path):
    big = store_data.write_streamed_instance(tmp_path / "big.dcm", 32 << 20)
    scp = scp_ae(pair.spool / "missing", SMALL_THRESHOLD)  # spooling fails: nowhere to write
    pair.serve(StoreHandler(), ae=scp)
    assoc = pair.associate([(store_data.MULTIFRAME_BYTE_SC_STORAGE, [ExplicitVRLittleEndian])])

    start = time.monotonic()
    status = assoc.send_c_store(big.instance.path)
    elapsed = time.monotonic() - start

    assert status.Status == 0xA700  # Refused: out of resources
    assert "cannot spool" in status.ErrorComment
    assert elapsed < PROMPTLY + 5, f"the SCU took {elapsed:.2f} s"
    assert assoc.is_established  # the SCP read the rest, answered and goes on

def test_evt_pdu_sent_sees_every_pdu_of_a_streamed_data_set(our_server, instances):
    """Sending from a file streams pre-encoded P-DATA-TFs; a bound EVT_PDU_SENT still sees each one."""
    from router.net.pdu import PDataTF

    instance = instances["explicit"][store_data.TYPICAL]
    sent = []
    server = our_server.start(scp_ae(), evt_handlers=[(evt.EVT_C_STORE, lambda event: 0)])
    scu = scu_ae([(instance.sop_class_uid, [instance.transfer_syntax])])
    handlers = [(evt.EVT_PDU_SENT, lambda event: sent.append(event.pdu))]
    assoc = scu.associate(LOOPBACK, server.server_address[1], ae_title=SCP_TITLE, evt_handlers=handlers)
    assert assoc.send_c_store(instance.path).Status == SUCCESS
    assoc.release()
    pdvs = [pdv for pdu in sent if isinstance(pdu, PDataTF) for pdv in pdu.pdvs if not pdv.is_command]
    assert sum(len(pdv.data) for pdv in pdvs) == instance.path.stat().st_size - store_data.data_offset(instance.path)


SMALL_PEER_PDU = 16384  # DCMTK's and pynetdicom's default


def stream_to_a_small_pdu_peer(our_server, instance, evt_handlers) -> int:
    """Send `instance` from its file to our SCP announcing 16 KB PDUs; the data set size it received."""
    received = []
    scp = scp_ae()
    scp.maximum_pdu_size = SMALL_PEER_PDU

    def handle_store(event: evt.Event) -> int:
        received.append(len(event.encoded_dataset(include_meta=False)))
        return SUCCESS

    server = our_server.start(scp, evt_handlers=[(evt.EVT_C_STORE, handle_store)])
    scu = scu_ae([(instance.sop_class_uid, [instance.transfer_syntax])])
    assoc = scu.associate(LOOPBACK, server.server_address[1], ae_title=SCP_TITLE, evt_handlers=evt_handlers)
    assert assoc.send_c_store(instance.path).Status == SUCCESS
    assoc.release()
    return received[0]


def test_a_streamed_data_set_goes_out_in_one_request_and_one_write_per_block(our_server, instances, monkeypatch):
    """The PDUs of one block read from the file are one P-DATA request to the Upper Layer state
    machine and one write, not one each."""
    from router.net.connection import Connection, Role
    from router.net.dimse import data_fragment_size, data_set_pdus_block_size
    from router.net.sources import BLOCK_SIZE

    instance = instances["explicit"][store_data.TYPICAL]
    size = instance.path.stat().st_size - store_data.data_offset(instance.path)
    requests, writes = [], []
    send_raw_data = Connection.send_raw_data

    def counted(connection, encoded, now):
        requests.append(connection.role)
        send_raw_data(connection, encoded, now)

    monkeypatch.setattr(Connection, "send_raw_data", counted)  # the real method still does the work
    received = stream_to_a_small_pdu_peer(our_server, instance, [(evt.EVT_DATA_SENT, writes.append)])

    pdus = -(-size // data_fragment_size(SMALL_PEER_PDU))
    blocks = -(-size // data_set_pdus_block_size(SMALL_PEER_PDU, BLOCK_SIZE))
    assert received == size
    assert blocks < pdus
    # The requestor: the command's PDU, then a request per block; the acceptor: its response.
    assert requests.count(Role.REQUESTOR) == 1 + blocks
    assert len(writes) == blocks + 2  # the blocks (the first with the command), the A-ASSOCIATE-RQ, the A-RELEASE-RQ


def test_evt_fsm_transition_sees_a_step_per_pdu_of_a_streamed_data_set(our_server, instances):
    from router.net.dimse import data_fragment_size

    instance = instances["explicit"][store_data.TYPICAL]
    size = instance.path.stat().st_size - store_data.data_offset(instance.path)
    steps = []
    received = stream_to_a_small_pdu_peer(our_server, instance, [(evt.EVT_FSM_TRANSITION, steps.append)])

    sent = [step for step in steps if step.action == "DT-1"]
    assert received == size
    assert len(sent) == 1 + -(-size // data_fragment_size(SMALL_PEER_PDU))  # the command's PDU, then the data set's


# ---- a file that changed since its source was made ----------------------------------------
def shrink_after_opening(path: Path, tmp_path: Path) -> DatasetSource:
    """The source of a copy of `path` that then loses its last 1,000 bytes."""
    copy = tmp_path / "shrinking.dcm"
    shutil.copyfile(path, copy)
    source = source_for(copy)
    os.truncate(copy, copy.stat().st_size - 1000)
    return source


def test_a_file_shorter_than_its_source_says_aborts_the_association(pair, instances, tmp_path):
    """The command has gone and the peer waits for a data set that cannot come whole: the
    association is aborted, the caller told why, and nothing more is sent on it."""
    handler, sent = StoreHandler(), []
    pair.serve(handler)
    assoc = pair.associate(evt_handlers=[(evt.EVT_DIMSE_SENT, lambda event: sent.append(event.message))])
    typical, small = instances["implicit"][store_data.TYPICAL], instances["implicit"][store_data.SMALL]

    outcomes = list(assoc.send_c_stores([shrink_after_opening(typical.path, tmp_path), small.path]))

    error = outcomes[0][1]
    assert isinstance(error, ValueError) and "ended after" in str(error)
    assert outcomes[1][1] is None
    assert sent == []  # the next request did not follow the broken data set onto the wire
    assert not assoc.is_established and assoc.is_aborted
    assert handler.seen == []


def test_a_file_removed_before_it_is_sent_aborts_the_association(pair, instances, tmp_path):
    pair.serve(StoreHandler())
    assoc = pair.associate()
    copy = tmp_path / "removed.dcm"
    shutil.copyfile(instances["explicit"][store_data.TYPICAL].path, copy)
    source = source_for(copy)
    copy.unlink()

    with pytest.raises(FileNotFoundError):
        assoc.send_c_store(source)

    assert not assoc.is_established and assoc.is_aborted


# ---- a save that fails ----------------------------------------------------------------------------
@contextlib.contextmanager
def file_size_limit(size: int):
    """Writes past `size` bytes fail in this process (EFBIG, as on a full disk) while inside."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.mark.parametrize("held", ["in memory", "in memory, a file made ahead", "saved before"])
def test_a_save_that_fails_leaves_no_part_and_the_file_already_there_whole(tmp_path, held):
    """A resent instance whose save fails (a full disk) must not cut the copy saved before."""
    target = tmp_path / "instance.dcm"
    target.write_bytes(b"the copy acknowledged before")
    data = b"x" * 20000
    if held.startswith("in memory"):
        ready = ReadyFile() if held.endswith("ahead") else None
        if ready is not None:
            ready.take(target)
            ready.refill()  # as after an earlier instance's answer
        received = ReceivedDataset(file_header=b"H" * 132, parts=[memoryview(data)], length=len(data), ready=ready)
    else:
        earlier = tmp_path / "earlier" / "instance.dcm"
        earlier.parent.mkdir()
        earlier.write_bytes(b"H" * 132 + data)
        received = ReceivedDataset(file_header=b"H" * 132, path=str(earlier), data_offset=132, length=len(data))

    with file_size_limit(4096), pytest.raises(OSError) as error:
        received.save_as(target)

    assert error.value.errno == errno.EFBIG
    assert target.read_bytes() == b"the copy acknowledged before"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["instance.dcm"]
    received.save_as(target)  # once there is room, the same save goes through
    assert target.read_bytes() == b"H" * 132 + data


@pytest.mark.parametrize("version, source", [("OURS_1", "STORESCU"), (None, None), ("ODD", "AE TITLE ")])
def test_the_file_header_reads_back_as_the_file_meta_it_names(version, source):
    from router.net.received import build_file_meta, file_header

    uids = (CT_IMAGE_STORAGE, "1.2.3.45", ExplicitVRLittleEndian, "2.25.12345")
    header = file_header(*uids, version, source)
    read = pydicom.dcmread(BytesIO(header + b"\x08\x00\x18\x00UI\x08\x001.2.3.45"))
    expected = build_file_meta(*uids, version, source)
    assert header[128:132] == b"DICM" and len(header) % 2 == 0
    for element in expected:  # text is compared as DICOM does: trailing padding is not significant
        value = read.file_meta[element.tag].value
        assert value.rstrip() == element.value.rstrip() if isinstance(value, str) else value == element.value
    assert "ImplementationVersionName" in read.file_meta if version else "ImplementationVersionName" not in read.file_meta
    assert read.file_meta.FileMetaInformationGroupLength == len(header) - 132 - 12


# ---- pipelined C-STOREs (asynchronous operations window) -------------------------------
def pipelining_pair(pair, limit: int | None, handler) -> AE:
    """Our SCP, allowing `limit` outstanding operations (None: the default, synchronous)."""
    return pair.serve(handler, also=() if limit is None else [(evt.EVT_ASYNC_OPS, allow_outstanding(limit))])


def associate_asking(pair, invoked: int | None, evt_handlers=()):
    """An association with CT contexts only, proposing a window of `invoked` (None: none)."""
    ext_neg = [] if invoked is None else [AsyncOperationsWindow(invoked, 1)]
    return pair.associate([(CT_IMAGE_STORAGE, [ts]) for ts in SYNTAXES.values()], ext_neg, evt_handlers)


@pytest.mark.parametrize(
    "allowed, asked, negotiated",
    [(None, 8, (1, 1)), (4, None, (1, 1)), (4, 8, (4, 1)), (16, 3, (3, 1)), (16, 0, (16, 1))],
)
def test_the_window_the_acceptor_allows_is_the_requestors_to_use(pair, allowed, asked, negotiated):
    pipelining_pair(pair, allowed, StoreHandler())
    assoc = associate_asking(pair, asked)
    assert assoc.acceptor.asynchronous_operations == negotiated
    assoc.release()


def test_send_c_stores_keeps_the_window_full_and_answers_in_order(pair):
    window = 4
    sent_ahead = threading.Event()
    requests_sent = []

    def count_requests(event):
        if event.message.is_response:
            return
        requests_sent.append(event.message.message_id)
        if len(requests_sent) == window:
            sent_ahead.set()

    def first_waits_for_the_window(event):
        # Only possible when the SCU sends the next requests before this one's response.
        return sent_ahead.wait(PROMPTLY * 5)

    handler = StoreHandler(first_waits_for_the_window)
    pipelining_pair(pair, window, handler)
    assoc = associate_asking(pair, window, [(evt.EVT_DIMSE_SENT, count_requests)])
    datasets = [store_data.small_ct(seed) for seed in range(10)]

    outcomes = list(assoc.send_c_stores(datasets))

    assert [dataset for dataset, _ in outcomes] == datasets
    assert [response.status for _, response in outcomes] == [SUCCESS] * 10
    assert [response.affected_sop_instance_uid for _, response in outcomes] == [ds.SOPInstanceUID for ds in datasets]
    assert handler.seen[0] is True  # the first handler saw the window filled
    assoc.release()
    handler.check()


def test_send_c_stores_read_in_part_leaves_no_response_for_a_later_request_with_one_of_its_ids(pair):
    window = 4
    pipelining_pair(pair, window, StoreHandler())
    assoc = associate_asking(pair, window)
    datasets = [store_data.small_ct(seed) for seed in range(window)]
    for _, first in assoc.send_c_stores(datasets):
        break  # three requests still outstanding, IDs 2 to 4
    later = store_data.small_ct(99)

    status = assoc.send_c_store(later, msg_id=first.message_id_being_responded_to + 2)

    assert (status.Status, status.AffectedSOPInstanceUID) == (SUCCESS, later.SOPInstanceUID)
    assoc.release()


def test_send_c_stores_reports_what_it_could_not_send_and_sends_the_rest(pair, instances):
    handler = StoreHandler(lambda event: event.request.affected_sop_instance_uid)
    pipelining_pair(pair, 8, handler)
    assoc = associate_asking(pair, 8)  # CT contexts only: the MR has none
    ct, mr = instances["explicit"][store_data.SMALL], instances["explicit"][store_data.TYPICAL]

    outcomes = list(assoc.send_c_stores([ct.path, mr.path, ct.path]))

    assert [type(outcome) for _, outcome in outcomes] == [CStoreRSP, ValueError, CStoreRSP]
    assert "No presentation context" in str(outcomes[1][1])
    assert handler.seen == [ct.sop_instance_uid] * 2
    assoc.release()
    handler.check()


def test_send_c_stores_reports_a_file_it_cannot_read_and_a_data_set_without_uids_and_sends_the_rest(pair, instances, tmp_path):
    handler = StoreHandler(lambda event: event.request.affected_sop_instance_uid)
    pair.serve(handler)
    assoc = pair.associate()
    ct = instances["explicit"][store_data.SMALL]

    outcomes = list(assoc.send_c_stores([tmp_path / "gone.dcm", ct.path, Dataset()]))

    assert isinstance(outcomes[0][1], FileNotFoundError)
    assert isinstance(outcomes[1][1], CStoreRSP) and outcomes[1][1].status == SUCCESS
    assert isinstance(outcomes[2][1], ValueError) and "not a DICOM instance" in str(outcomes[2][1])
    assert handler.seen == [ct.sop_instance_uid]
    assert assoc.is_established  # nothing had gone out for them: the association goes on
    assoc.release()
    handler.check()


# ---- files cut short: never sent ----------------------------------------------------------------
def cut_short_ct(directory: Path, seed: int, missing: int) -> store_data.Instance:
    """A small CT of its own SOP instance, its file `missing` bytes short (cut inside its pixel data)."""
    path = directory / f"cut-{seed}.dcm"
    instance = store_data.write_instance(store_data.small_ct(seed), ExplicitVRLittleEndian, path, store_data.SMALL)
    data = instance.path.read_bytes()
    instance.path.write_bytes(data[: len(data) - missing])
    return instance


PIXELS_CUT = "truncated: Pixel Data needs 8192 bytes, 7192 remain"  # a small CT missing 1000 bytes


def test_send_c_store_of_a_file_cut_short_raises_a_value_error_and_sends_nothing(pair, instances, tmp_path):
    handler = StoreHandler(lambda event: event.request.affected_sop_instance_uid)
    pair.serve(handler)
    assoc = pair.associate()
    cut = cut_short_ct(tmp_path, seed=7, missing=1000)

    with pytest.raises(ValueError, match=f"^{PIXELS_CUT}$"):
        assoc.send_c_store(cut.path)

    assert assoc.is_established  # nothing went out: the association goes on
    whole = instances["explicit"][store_data.SMALL]
    assert assoc.send_c_store(whole.path).Status == SUCCESS
    assoc.release()
    assert handler.seen == [whole.sop_instance_uid]
    handler.check()


def test_send_c_stores_reports_a_file_cut_short_and_sends_the_rest(pair, instances, tmp_path):
    handler = StoreHandler(lambda event: (event.request.affected_sop_instance_uid, event.encoded_dataset(include_meta=False)))
    pipelining_pair(pair, 8, handler)
    assoc = associate_asking(pair, 8)
    whole = instances["explicit"][store_data.SMALL]
    cut = cut_short_ct(tmp_path, seed=8, missing=1000)

    outcomes = list(assoc.send_c_stores([whole.path, cut.path, whole.path]))

    assert [type(outcome) for _, outcome in outcomes] == [CStoreRSP, NotWhole, CStoreRSP]
    assert outcomes[1][0] == cut.path and str(outcomes[1][1]) == PIXELS_CUT
    assert isinstance(outcomes[1][1], ValueError)
    assert [uid for uid, _ in handler.seen] == [whole.sop_instance_uid] * 2  # the cut one never arrived
    assert all(data == store_data.data_part(whole.path) for _, data in handler.seen)
    assoc.release()
    handler.check()


def test_a_file_cut_where_its_pixel_data_ends_is_whole_and_arrives_as_it_is(pair, tmp_path):
    """Cut after the last byte of its pixel data, a file loses the element that followed (here Data
    Set Trailing Padding): what is left is a whole data set, and it is sent."""
    handler = StoreHandler(lambda event: event.encoded_dataset(include_meta=False))
    pair.serve(handler)
    assoc = pair.associate()
    dataset = store_data.small_ct(seed=9)
    dataset.add_new(0xFFFCFFFC, "OB", b"\0" * 6)
    instance = store_data.write_instance(dataset, ExplicitVRLittleEndian, tmp_path / "padded.dcm", store_data.SMALL)
    data = instance.path.read_bytes()
    instance.path.write_bytes(data[: -(12 + 6)])

    assert assoc.send_c_store(instance.path).Status == SUCCESS
    assoc.release()
    assert handler.seen == [store_data.data_part(instance.path)]
    handler.check()


def test_send_c_stores_one_at_a_time_without_a_window(pair, instances):
    requests, outstanding_at_each_response = [], []

    def response_received(event):
        outstanding_at_each_response.append(len(requests) - len(outstanding_at_each_response))

    pipelining_pair(pair, None, StoreHandler())
    assoc = associate_asking(pair, 8, [
        (evt.EVT_DIMSE_SENT, lambda event: requests.append(event.message)),
        (evt.EVT_DIMSE_RECV, response_received),
    ])
    ct = instances["implicit"][store_data.SMALL]

    outcomes = list(assoc.send_c_stores([ct.path] * 5))

    assert [response.status for _, response in outcomes] == [SUCCESS] * 5
    assert outstanding_at_each_response == [1] * 5  # the acceptor allowed no more
    assoc.release()


def test_send_c_stores_after_the_peer_aborts_yields_none_for_the_rest(pair, instances):
    def abort(event):
        event.assoc.abort()

    pipelining_pair(pair, 4, StoreHandler(abort))
    assoc = associate_asking(pair, 4)
    ct = instances["implicit"][store_data.SMALL]

    outcomes = list(assoc.send_c_stores([ct.path] * 6))

    assert len(outcomes) == 6 and all(outcome is None for _, outcome in outcomes)
    assert not assoc.is_established


def test_a_uid_that_the_first_read_cuts_in_two_is_read_whole(instances, tmp_path):
    """A long File Meta Information Version (0002,0001) puts the instance UID across the 4 KiB read first."""
    instance = instances["explicit"][store_data.SMALL]
    ds = pydicom.dcmread(instance.path)
    path = tmp_path / "long-version.dcm"
    uid = instance.sop_instance_uid.encode()

    def uid_offset(padding: int) -> int:
        ds.file_meta.FileMetaInformationVersion = b"\x00\x01" + b"\x00" * padding
        ds.save_as(path, enforce_file_format=True)
        return path.read_bytes().index(uid)

    shift = 4_096 - len(uid) // 2 - uid_offset(0)  # the UID's middle on the 4 KiB boundary
    at = uid_offset(shift - shift % 2)
    assert at < 4_096 < at + len(uid)

    source = source_for(path)

    assert (source.sop_class_uid, source.sop_instance_uid) == (instance.sop_class_uid, instance.sop_instance_uid)
    assert b"".join(bytes(block) for block in source.blocks()) == store_data.data_part(path)


def test_a_file_meta_element_claiming_gigabytes_is_not_followed_to_the_end_of_the_file(instances, tmp_path):
    """(0002,0102) OB with a length of 4 GiB - 2: the walk gives up after 1 MiB, not at the file's end."""
    instance = instances["explicit"][store_data.SMALL]
    whole = instance.path.read_bytes()
    data_start = len(whole) - len(store_data.data_part(instance.path))
    bogus = struct.pack("<HH2s2xI", 0x0002, 0x0102, b"OB", 0xFFFFFFFE)
    path = tmp_path / "bogus-meta.dcm"
    path.write_bytes(whole[:data_start] + bogus + b"\x00" * (8 << 20))

    with open(path, "rb", buffering=0) as file:
        meta, head = read_meta(file, file.read(4096))

    assert meta is None and len(head) <= 2 << 20


def test_a_file_that_is_its_file_meta_alone_has_an_empty_data_set(instances, tmp_path):
    meta_only = tmp_path / "meta-only.dcm"
    whole = instances["explicit"][store_data.SMALL].path.read_bytes()
    meta_only.write_bytes(whole[: len(whole) - len(store_data.data_part(instances["explicit"][store_data.SMALL].path))])

    source = source_for(meta_only, read_whole_below=64 << 10)

    assert (source.length, source.data) == (0, b"")


@pytest.mark.parametrize("read_whole_below", [0, 64 << 10])
def test_a_file_meta_longer_than_the_first_read_is_walked_in_the_file(instances, tmp_path, read_whole_below):
    """Private Information (0002,0102) of 10 KB pushes the data set past the 4 KiB read first."""
    instance = instances["explicit"][store_data.SMALL]
    ds = pydicom.dcmread(instance.path)
    ds.file_meta.PrivateInformationCreatorUID = "1.2.3.4"
    ds.file_meta.PrivateInformation = b"\x01" * 10_000
    path = tmp_path / "long-meta.dcm"
    ds.save_as(path, enforce_file_format=True)

    source = source_for(path, read_whole_below)

    assert (source.sop_instance_uid, source.transfer_syntax) == (instance.sop_instance_uid, instance.transfer_syntax)
    assert source.offset > 10_000
    assert b"".join(bytes(block) for block in source.blocks()) == store_data.data_part(path)
    assert (source.data is not None) is bool(read_whole_below)


# ---- a data set cut short, as a peer may send it ------------------------------------------------
def sent_as_is(instance: store_data.Instance, missing: int = 0) -> DatasetSource:
    """The data set of `instance`'s file, `missing` bytes short, sent as raw bytes (no check on our side)."""
    data = store_data.data_part(instance.path)
    data = data[: len(data) - missing]
    return DatasetSource(instance.sop_class_uid, instance.sop_instance_uid, instance.transfer_syntax, len(data), data=data)


@pytest.mark.parametrize("kind, threshold", [(store_data.SMALL, None), (store_data.TYPICAL, SMALL_THRESHOLD)])
def test_a_data_set_cut_short_is_refused_before_the_handler_and_the_association_goes_on(pair, instances, kind, threshold):
    """In memory (small) and spooled (typical, past the threshold): 0xC000 with the element it ends in."""
    handler = StoreHandler(lambda event: event.request.affected_sop_instance_uid)
    pair.serve(handler, threshold=threshold)
    assoc = pair.associate()
    instance = instances["explicit"][kind]

    response = c_store_response(assoc, sent_as_is(instance, missing=1000))

    assert response.status == CANNOT_UNDERSTAND
    assert re.fullmatch(r"data set truncated: Pixel Data needs \d+ bytes, \d+ remain", response.error_comment)
    assert handler.seen == [] and pair.spool_files() == []
    assert c_store_response(assoc, sent_as_is(instance)).status == SUCCESS
    assoc.release()
    assert handler.seen == [instance.sop_instance_uid]
    handler.check()


@pytest.mark.parametrize("missing, status", [(0, SUCCESS), (100, CANNOT_UNDERSTAND)])
def test_compressed_pixel_data_received_in_small_fragments_is_walked_across_them(pair, tmp_path, missing, status):
    """Encapsulated pixel data is not checked by its header alone: its fragments are walked through
    the PDVs of a peer's minimum-size PDUs."""
    instance = store_data.jpeg_instance(tmp_path)
    handler = StoreHandler(lambda event: event.encoded_dataset(include_meta=False))
    ae = pair.serve(handler)
    ae.maximum_pdu_size = 512  # our SCP asks for small PDUs: the data set comes in many fragments
    assoc = pair.associate([(instance.sop_class_uid, [instance.transfer_syntax])])

    assert c_store_response(assoc, sent_as_is(instance, missing)).status == status
    assoc.release()
    assert handler.seen == ([store_data.data_part(instance.path)] if status == SUCCESS else [])
    handler.check()
