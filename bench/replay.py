"""Our storescp's CPU per received message, with the network and the file system out of the picture.

    python -m bench.replay [--kind small] [--count 2000] [--rounds 8] [--store DIR] [--profile]

The stream a modality sends (A-ASSOCIATE-RQ, then for each instance its command in one P-DATA-TF
and its data set in P-DATA-TFs as large as our storescp announces, as DCMTK's storescu sends them,
then A-RELEASE-RQ) is encoded once, then handed to our storescp's association code read by read through
a `ScriptedSocket`, on this thread: what is timed is our Python alone, each round on a fresh
association. By default the EVT_C_STORE handler answers Success without storing (the engine's
cost); `--store DIR` saves each instance there as storescp does (tmpfs keeps the disk out).

Next to it, `bare_loop` does the same per-instance work in one plain loop (read each PDU out of a
reused buffer, walk its PDVs, decode the command, build the file header, encode the response PDU):
the floor for that work in Python, so the difference is the engine's plumbing (and, for instances
over storescp's 8 MiB spool threshold, writing them to a spool file in the temporary folder or
`--store DIR`, which the bare loop does not do). Both are printed as CPU microseconds per instance, the best
round and the median (the best is the steadiest figure on a shared machine).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.floor_scp import PlainStore
from bench.instances import instance_set
from bench.profiled_scp import format_stats
from router.net.acceptor import AcceptorAssociation
from router.net.acse import build_request
from router.net.ae import AE
from router.net.apps import storescp
from router.net.codes import MCH_COMMAND, MCH_LAST, PduType
from router.net.dimse import data_set_pdus, data_set_pdus_block_size, fragment
from router.net.dimse_messages import CStoreRQ, encode_command
from router.net.driver import READ_SIZE
from router.net.pdu import ReleaseRQ, encode
from router.net.presentation import PresentationContext
from router.net.server import AssociationServer
from router.net.sources import BLOCK_SIZE, source_for
from tests.interop.store_data import LARGE, SMALL, TYPICAL

UNUSED_PORT = "11112"  # storescp's options want a port; the replay never listens on it
PEER_MAX_PDU = 16384  # DCMTK storescu's default maximum PDU, announced in its A-ASSOCIATE-RQ
PDU_SIZE = storescp.STORE_PDU  # the PDUs it sends are as large as our storescp announces
SCP_TITLE, SCU_TITLE = "STORESCP", "STORESCU"
_PDU_HEADER = struct.Struct(">BxI")
_PDV_HEADER = struct.Struct(">IBB")
_PDV_DATA_OFFSET = 6  # item-length (4), context ID, message control header


@dataclass(frozen=True)
class Stream:
    """What a modality sends for `count` instances, one bytes object per PDU."""

    pdus: tuple[bytes, ...]
    count: int
    transfer_syntax: str


def encode_stream(files: Sequence[Path]) -> Stream:
    """The PDUs DCMTK's storescu would send for `files`: one context per SOP class, IDs 1, 3, ..."""
    sources = [source_for(path) for path in files]
    syntaxes = sorted({source.transfer_syntax for source in sources})
    classes = sorted({source.sop_class_uid for source in sources})
    proposed = [PresentationContext(uid, syntaxes) for uid in classes]
    request, numbered = build_request(SCP_TITLE, SCU_TITLE, proposed, AE(SCU_TITLE).implementation(PEER_MAX_PDU))
    context_of = {context.abstract_syntax: context.context_id for context in numbered}
    pdus = [encode(request)]
    for message_id, source in enumerate(sources, start=1):
        context_id = context_of[source.sop_class_uid]
        command = encode_command(CStoreRQ(message_id, source.sop_class_uid, source.sop_instance_uid), True)
        pdus += [encode(pdu) for pdu in fragment(context_id, command, None, PDU_SIZE)]
        blocks = source.blocks(data_set_pdus_block_size(PDU_SIZE, BLOCK_SIZE))
        wire = b"".join(chunk for chunks in data_set_pdus(context_id, blocks, source.length, PDU_SIZE) for chunk in chunks)
        pdus += split_pdus(wire)
    pdus.append(encode(ReleaseRQ()))
    return Stream(tuple(pdus), len(sources), syntaxes[0])


def split_pdus(wire: bytes) -> list[bytes]:
    """The PDUs that follow each other in `wire`, each as a bytes object."""
    pdus, position = [], 0
    while position < len(wire):
        end = position + _PDU_HEADER.size + _PDU_HEADER.unpack_from(wire, position)[1]
        pdus.append(wire[position:end])
        position = end
    return pdus


class ScriptedSocket:
    """A connected socket to our side whose peer sent `pdus`, one per read; what we send is counted."""

    def __init__(self, pdus: Sequence[bytes]) -> None:
        self._unread = list(reversed(pdus))
        self._written: list[bytes] = []

    def pdus_written(self, pdu_type: int) -> int:
        """How many PDUs of `pdu_type` we have sent to the peer."""
        return sum(pdu[0] == pdu_type for pdu in split_pdus(b"".join(self._written)))

    def recv_into(self, buffer: memoryview, size: int = 0, flags: int = 0) -> int:
        if not self._unread:
            return 0  # the peer closed the connection
        pdu = self._unread.pop()
        buffer[: len(pdu)] = pdu
        return len(pdu)

    def recv(self, size: int, flags: int = 0) -> bytes:
        return self._unread.pop() if self._unread else b""

    def sendall(self, data: bytes) -> None:
        self._written.append(bytes(data))

    def sendmsg(self, chunks: Sequence[bytes]) -> int:
        self._written.append(b"".join(chunks))
        return sum(len(chunk) for chunk in chunks)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 104)

    def settimeout(self, timeout: float | None) -> None:
        pass

    def setsockopt(self, *option: object) -> None:
        pass

    def shutdown(self, how: int) -> None:
        pass

    def close(self) -> None:
        pass


class ReplayedScp:
    """Our storescp (its AE and handlers, as `python -m router.net storescp` builds them), serving
    replayed streams in this thread."""

    def __init__(self, store_into: Path | None) -> None:
        folder = str(store_into) if store_into else tempfile.gettempdir()
        args = storescp.parse_args([UNUSED_PORT, "-aet", SCP_TITLE, "-od", folder, *([] if store_into else ["--ignore"])])
        ae, handlers = storescp.build_scp(args)
        self._server = AssociationServer(ae, ("127.0.0.1", 0), SCP_TITLE, ae.supported_contexts, handlers)

    def serve(self, stream: Stream) -> float:
        """CPU seconds to serve `stream` on a fresh association; RuntimeError if a request went unanswered."""
        sock = ScriptedSocket(stream.pdus)
        association = AcceptorAssociation(self._server, sock, ("127.0.0.1", 50000))  # type: ignore[arg-type]
        start = time.process_time()
        association.serve()
        spent = time.process_time() - start
        answers = sock.pdus_written(PduType.P_DATA_TF)  # one C-STORE-RSP each
        if answers != stream.count or not association.is_released:
            raise RuntimeError(f"{answers} of {stream.count} C-STOREs answered; released: {association.is_released}")
        return spent

    def close(self) -> None:
        self._server.socket.close()


def bare_loop(stream: Stream) -> float:
    """CPU seconds for the per-instance work alone in one plain loop (see the module docstring)."""
    sock, buffer = ScriptedSocket(stream.pdus[1:-1]), memoryview(bytearray(READ_SIZE))
    work = PlainStore(defaultdict(lambda: stream.transfer_syntax), ("1.2.3", "BARE"), SCU_TITLE, PEER_MAX_PDU)
    start = time.process_time()
    answered = 0
    while received := sock.recv_into(buffer):
        view = memoryview(buffer[:received].tobytes())  # read as a receiver reads: out of its buffer
        end = _PDU_HEADER.size + _PDU_HEADER.unpack_from(view)[1]
        position = _PDU_HEADER.size
        while position < end:
            length, context_id, control = _PDV_HEADER.unpack_from(view, position)
            fragment_data = view[position + _PDV_DATA_OFFSET : position + 4 + length]
            position += 4 + length
            response = work.take(context_id, bool(control & MCH_COMMAND), bool(control & MCH_LAST), fragment_data)
            answered += response is not None
    if answered != stream.count:
        raise RuntimeError(f"the bare loop answered {answered} of {stream.count}")
    return time.process_time() - start


def rounds(run: Callable[[], float], count: int) -> list[float]:
    return [run() for _ in range(count)]


def per_instance(seconds: Sequence[float], count: int) -> str:
    best, median = min(seconds) / count * 1e6, statistics.median(seconds) / count * 1e6
    return f"{best:7.1f} us best, {median:7.1f} us median"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=(SMALL, TYPICAL, LARGE), default=SMALL)
    parser.add_argument("--count", type=int, default=2000, help="instances in the stream")
    parser.add_argument("--rounds", type=int, default=8, help="times the stream is served (best and median reported)")
    parser.add_argument("--store", type=Path, help="save each instance in this folder (emptied between rounds)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one round instead")
    args = parser.parse_args(argv)
    stream = encode_stream(instance_set(args.kind, args.count).files)
    scp = ReplayedScp(args.store)
    try:
        def one_round() -> float:
            if args.store:
                shutil.rmtree(args.store, ignore_errors=True)
                args.store.mkdir(parents=True)
            return scp.serve(stream)

        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(one_round)
            print(format_stats(pstats.Stats(profiler), f"our storescp serving {stream.count} {args.kind} instances", 30))
            return 0
        ours = rounds(one_round, args.rounds)
        bare = rounds(lambda: bare_loop(stream), args.rounds)
    finally:
        scp.close()
    stored = f", storing into {args.store}" if args.store else ", storing nothing"
    print(f"{stream.count} {args.kind} instances replayed in-process, {args.rounds} rounds{stored}; CPU per instance:")
    print(f"  our storescp's association code {per_instance(ours, stream.count)}")
    print(f"  the same work in one bare loop  {per_instance(bare, stream.count)}  (no UL FSM, events or layers)")
    print(f"  ratio ours / bare loop (best)   {min(ours) / min(bare):7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
