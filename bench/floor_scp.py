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

import router.net.server
from router.net.acceptor import AcceptorAssociation
from router.net.apps import storescp
from router.net.codes import PduType
from router.net.dimse import encode_single_pdu
from router.net.dimse_messages import CStoreRQ, CStoreRSP, DecodedCommand, decode_command, encode_command
from router.net.driver import READ_SIZE
from router.net.gather import write_gathered
from router.net.pdu import HEADER_LENGTH, ReleaseRP, decode_pdata, encode, read_header
from router.net.received import file_header
from router.net.status import SUCCESS

FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
FILE_MODE = 0o666
NO_TIMEOUT = struct.pack("@ll", 0, 0)  # SO_RCVTIMEO of zero: block until data


class FloorAssociation(AcceptorAssociation):
    """An acceptor association whose data phase is `plain_data_phase`."""

    folder = "."  # where instances are written: storescp's -od

    def serve(self) -> None:
        link = self.link
        assert link is not None
        link.connection.transport_connected(link.now())
        try:
            while not link.closed and not self.is_established and link.read(None):
                self.process_indications()
            if self.is_established:
                self.plain_data_phase(link.sock)
        finally:
            link.close()
            self._closed()

    def plain_data_phase(self, sock: socket.socket) -> None:
        """Store every C-STORE until the A-RELEASE-RQ; return at anything else."""
        syntaxes = {context.context_id: context.transfer_syntax[0] for context in self.accepted_contexts}
        prefix = os.path.join(self.folder, "")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, NO_TIMEOUT)  # the engine's ARTIM wait, undone
        buffer = bytearray(READ_SIZE)
        view, pending = memoryview(buffer), b""
        request: CStoreRQ | None = None
        parts: list = []
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
                if pdu_type != PduType.P_DATA_TF:
                    return
                for pdv in decode_pdata(memoryview(data)[position + HEADER_LENGTH : end]).pdvs:
                    if pdv.is_command:
                        decoded = decode_command(pdv.data) if pdv.is_last else None  # one-fragment commands only
                        if not isinstance(decoded, DecodedCommand) or not isinstance(decoded.message, CStoreRQ):
                            return
                        request = decoded.message
                        parts = [file_header(request.affected_sop_class_uid, request.affected_sop_instance_uid,
                                             syntaxes[pdv.context_id], self.ae.implementation_class_uid,
                                             self.ae.implementation_version_name, self.requestor.ae_title)]
                        continue
                    parts.append(pdv.data)
                    if pdv.is_last and request is not None:
                        self._store(prefix + request.affected_sop_instance_uid + storescp.FILE_SUFFIX, parts)
                        response = CStoreRSP(request.message_id, SUCCESS,
                                             affected_sop_class_uid=request.affected_sop_class_uid,
                                             affected_sop_instance_uid=request.affected_sop_instance_uid)
                        command = encode_command(response, False)
                        sock.sendall(encode_single_pdu(pdv.context_id, command, self.requestor.maximum_length or 0))
                position = end
            pending = data[position:]

    @staticmethod
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
