"""The floor for a Python storescp: ours, with its data phase replaced by one plain loop.

    python -m bench.floor_scp PORT -od DIR [storescp's options]

The association is negotiated by our engine exactly as `python -m router.net storescp --fork`
negotiates it (same AE, contexts and options, a process per association). Once it is established,
the data phase is one loop on the socket: read into a reused buffer, cut the PDUs, decode each
P-DATA-TF's PDVs, decode the command, build the file header, `os.open`/`writev`/`close` the
instance, encode the C-STORE-RSP and `sendall` it. No Upper Layer state machine, indications,
message assembler, data set sink, events or handler: the work without the layers, so that
`bench.store --floor` can show how much of our receiver's time per instance is the layers', on
real sockets and files (`bench.replay` shows it for the association code alone, in-process and
hot). It serves what a storescu sends (C-STOREs whose command fits one PDV, then A-RELEASE-RQ;
nothing sent before our A-ASSOCIATE-AC); anything else ends the association. Each data set is kept
in memory whole and written with one `writev`, where ours spools past 8 MiB: compare the two on
small and typical sets, not large ones. A benchmark reference, not a receiver to use.
"""

from __future__ import annotations

import functools
import os
import socket
import struct
import sys

from collections.abc import Callable, Mapping

import router.net.server
from router.net.acceptor import AcceptorAssociation
from router.net.apps import storescp
from router.net.codes import PduType
from router.net.dimse import encode_single_pdu
from router.net.dimse_messages import CStoreRQ, CStoreRSP, DecodedCommand, decode_command, encode_command
from router.net.driver import READ_SIZE
from router.net.gather import write_gathered
from router.net.pdu import HEADER_LENGTH, Decoded, PDataTF, ReleaseRP, decode, encode, read_header
from router.net.received import file_header
from router.net.status import SUCCESS

FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
FILE_MODE = 0o666
NO_TIMEOUT = struct.pack("@ll", 0, 0)  # SO_RCVTIMEO of zero: block until data


class PlainStore:
    """What a C-STORE receiver must do with each fragment, and nothing more: decode the command set
    and make the file header, keep the data set's fragments as views, and at its last fragment hand
    the instance to `store` (if given) and return the C-STORE-RSP as one encoded PDU. Shared by this
    floor and `bench.replay`'s bare loop."""

    def __init__(self, syntaxes: Mapping[int, str], implementation: tuple[str, str | None], calling_title: str,
                 peer_max_pdu: int, store: Callable[[CStoreRQ, list], None] | None = None) -> None:
        self._syntaxes, self._implementation, self._calling = syntaxes, implementation, calling_title
        self._peer_max, self._store = peer_max_pdu, store
        self._request: CStoreRQ | None = None
        self._parts: list = []

    def take(self, context_id: int, is_command: bool, is_last: bool, data: memoryview) -> bytes | None:
        """The response to send once this fragment completes an instance; ValueError for a command
        that is not a C-STORE-RQ in one fragment."""
        if is_command:
            decoded = decode_command(data) if is_last else None
            if not isinstance(decoded, DecodedCommand) or not isinstance(decoded.message, CStoreRQ):
                raise ValueError("not a C-STORE-RQ in one fragment")
            request = self._request = decoded.message
            self._parts = [file_header(request.affected_sop_class_uid, request.affected_sop_instance_uid,
                                       self._syntaxes[context_id], *self._implementation, self._calling)]
            return None
        self._parts.append(data)
        request = self._request
        if not is_last or request is None:
            return None
        if self._store is not None:
            self._store(request, self._parts)
        response = CStoreRSP(request.message_id, SUCCESS, affected_sop_class_uid=request.affected_sop_class_uid,
                             affected_sop_instance_uid=request.affected_sop_instance_uid)
        return encode_single_pdu(context_id, encode_command(response, False), self._peer_max)


class FloorAssociation(AcceptorAssociation):
    """An acceptor association whose data phase is `plain_data_phase`."""

    folder = "."  # where instances are written: storescp's -od

    def serve(self) -> None:
        link = self.link
        assert link is not None
        link.connection.transport_connected(link.now())
        try:
            if self.run_until(lambda: self.is_established, self.ae.acse_timeout) and self.is_established:
                self.plain_data_phase(link.sock)
        finally:
            link.close()
            self._closed()

    def plain_data_phase(self, sock: socket.socket) -> None:
        """Store every C-STORE until the A-RELEASE-RQ; return at anything else."""
        prefix = os.path.join(self.folder, "")
        work = PlainStore({context.context_id: context.transfer_syntax[0] for context in self.accepted_contexts},
                          (self.ae.implementation_class_uid, self.ae.implementation_version_name),
                          self.requestor.ae_title, self.requestor.maximum_length or 0,
                          lambda request, parts: _store(prefix + request.affected_sop_instance_uid + storescp.FILE_SUFFIX, parts))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, NO_TIMEOUT)  # the engine's ARTIM wait, undone
        buffer = bytearray(READ_SIZE)
        view, pending = memoryview(buffer), b""
        while received := sock.recv_into(buffer):
            data = pending + view[:received] if pending else view[:received].tobytes()  # one copy, as ours
            position = 0
            while len(data) - position >= HEADER_LENGTH:
                pdu_type, length = read_header(data, position)
                end = position + HEADER_LENGTH + length
                if len(data) < end:
                    break
                if pdu_type == PduType.RELEASE_RQ:
                    sock.sendall(encode(ReleaseRP()))
                    return
                decoded = decode(memoryview(data)[position:end], 0)
                if not isinstance(decoded, Decoded) or not isinstance(decoded.pdu, PDataTF):
                    return
                for pdv in decoded.pdu.pdvs:
                    try:
                        response = work.take(pdv.context_id, pdv.is_command, pdv.is_last, pdv.data)
                    except ValueError:
                        return
                    if response is not None:
                        sock.sendall(response)
                position = end
            pending = data[position:]


def _store(path: str, parts: list) -> None:
    handle = os.open(path, FILE_FLAGS, FILE_MODE)
    try:
        write_gathered(functools.partial(os.writev, handle), parts)
    finally:
        os.close(handle)


def main(argv: list[str] | None = None) -> int:
    args = storescp.parse_args(argv)
    os.makedirs(args.output_directory, exist_ok=True)
    ae, handlers = storescp.build_scp(args)
    FloorAssociation.folder = args.output_directory
    router.net.server.AcceptorAssociation = FloorAssociation  # type: ignore[misc]  # the server's class, here only
    ae.start_server((args.bind_address, args.port), block=True, evt_handlers=handlers, forking=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
