"""storescu: send DICOM files to a Storage SCP, streaming each file.

It proposes, for every SOP class among the files, a context in each transfer
syntax the files use; without `-cx` it also proposes the common storage
contexts as far as 128 allow. A progress line (count, MB/s, ETA) is shown when
stderr is a terminal.

Every file is read (its file meta) and checked to be whole before the
association is requested: one that is not DICOM, cannot be read or is cut
short (its data set announces more bytes than it holds) is named with the
reason and not sent. The exit status is 1 unless every file was stored.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections import defaultdict
from typing import Callable, TextIO

from router.net.ae import AE
from router.net.apps.common import exit_process
from router.net.apps.common import BadValue, add_syntax_options, client_parser, configure_timeouts, parse_integer
from router.net.apps.common import describe_final, setup_logging
from router.net.contexts import StoragePresentationContexts
from router.net.dimse_messages import CStoreRSP, status_dataset
from router.net.pdu_items import AsyncOperationsWindow
from router.net.acse import MAX_CONTEXTS
from router.net.sources import DatasetSource, source_for
from router.net.status import Service, StatusClass, classify

LOGGER = logging.getLogger("router.net")
EXIT_OK = 0
EXIT_FAILED = 1
MEGABYTE = 1 << 20
REDRAW_INTERVAL = 0.5  # seconds between redraws of the progress line while a file is on its way
MAX_WINDOW = 0xFFFF  # an Asynchronous Operations Window's invoked count is 16 bits, 0 meaning unlimited
STORED = (StatusClass.SUCCESS, StatusClass.WARNING)
NO_RESPONSE = "no response: the association ended"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = client_parser("storescu", "Send DICOM files to a Storage SCP", "STORESCU")
    parser.add_argument("path", nargs="+", help="DICOM files, or folders with -r")
    parser.add_argument("-r", "--recurse", action="store_true", help="send the files in folders, recursively")
    parser.add_argument("-cx", "--required-contexts", action="store_true", help="propose only the contexts the files need")
    parser.add_argument(
        "--async-ops", type=parse_window, default=1, metavar="N",
        help="propose an asynchronous operations window: up to N C-STOREs sent ahead of their responses "
        f"(0 = unlimited, at most {MAX_WINDOW}), if the peer allows it (default 1: one at a time, nothing "
        "proposed; some old peers drop associations that propose one)",
    )
    add_syntax_options(parser, "propose")
    return parser.parse_args(argv)


def parse_window(text: str) -> int:
    """--async-ops: 0 (unlimited) to MAX_WINDOW operations outstanding."""
    window = parse_integer(text)
    if not 0 <= window <= MAX_WINDOW:
        raise BadValue(f"invalid window {window}: 0 (unlimited) to {MAX_WINDOW}")
    return window


def find_files(paths: list[str], recurse: bool) -> tuple[list[str], int]:
    """The files to send, and how many folders were left out (named without -r)."""
    files, folders_left_out = [], 0
    for path in paths:
        if os.path.isdir(path):
            if not recurse:
                LOGGER.error(f"{path} is a folder: use -r to send what it holds")
                folders_left_out += 1
                continue
            for folder, _, names in os.walk(path):
                files.extend(os.path.join(folder, name) for name in sorted(names))
        else:
            files.append(path)
    return files, folders_left_out


def read_sources(files: list[str]) -> list[tuple[str, DatasetSource]]:
    """The sources of the files that can be sent; each other one is named, with the reason."""
    sources = []
    for path in files:
        try:
            sources.append((path, source_for(path)))
        except Exception as exc:  # not DICOM, unreadable, cut short: say which and go on
            LOGGER.error(f"Skipping {path}: {exc}")
    return sources


def requested_contexts(sources: list[DatasetSource], syntax: str | None, required_only: bool) -> list[tuple[str, list[str]]]:
    needed: dict[str, list[str]] = defaultdict(list)
    for source in sources:
        wanted = syntax or source.transfer_syntax
        if wanted not in needed[source.sop_class_uid]:
            needed[source.sop_class_uid].append(wanted)
    contexts = [(uid, [ts]) for uid, syntaxes in needed.items() for ts in syntaxes]
    if not required_only:
        for context in StoragePresentationContexts:
            if len(contexts) >= MAX_CONTEXTS:
                break
            if context.abstract_syntax not in needed:
                contexts.append((context.abstract_syntax, list(context.transfer_syntax)))
    return contexts[:MAX_CONTEXTS]


class Progress:
    """A one-line progress display (files done, MB/s, ETA) on `stream`, only when it is a terminal.

    The line is redrawn as each file is answered and every REDRAW_INTERVAL
    seconds in between, from the bytes sent so far (`bytes_sent`, the
    association's count, PDU headers and commands included), so that it moves
    while one large file is on its way too.
    """

    def __init__(self, count: int, total_bytes: int, bytes_sent: Callable[[], int], stream: TextIO) -> None:
        self.count, self.total, self.done = count, total_bytes, 0
        self.bytes_sent, self.stream = bytes_sent, stream
        self.enabled = stream.isatty()
        self.start = time.monotonic()
        self._lock = threading.Lock()
        self._finished = threading.Event()
        if self.enabled:
            threading.Thread(target=self._redraw_until_finished, name="storescu-progress", daemon=True).start()

    def advance(self) -> None:
        """One more file answered."""
        self.done += 1
        self._draw()

    def finish(self) -> None:
        """Stop redrawing and end the line."""
        self._finished.set()
        if self.enabled:
            with self._lock:
                self.stream.write("\n")
                self.stream.flush()

    def _redraw_until_finished(self) -> None:
        while not self._finished.wait(REDRAW_INTERVAL):
            self._draw()

    def _draw(self) -> None:
        if not self.enabled:
            return
        sent = min(self.bytes_sent(), self.total)
        rate = sent / max(time.monotonic() - self.start, 1e-6)
        eta = f"{(self.total - sent) / rate:5.0f} s" if rate else "    ? s"
        with self._lock:
            if self._finished.is_set():
                return
            self.stream.write(f"\r{self.done}/{self.count} files  {rate / MEGABYTE:7.1f} MB/s  ETA {eta} ")
            self.stream.flush()


def was_stored(path: str, outcome: CStoreRSP | ValueError | OSError | None) -> bool:
    """True if the peer stored the file at `path` (Success or Warning); if not, log why."""
    if isinstance(outcome, CStoreRSP):
        if classify(outcome.status) in STORED:
            return True
        reason = f"the peer answered {describe_final(status_dataset(outcome), Service.STORAGE)}"
    else:  # not sent (no context for it, unreadable), or no answer
        reason = NO_RESPONSE if outcome is None else str(outcome)
    LOGGER.error(f"{path}: {reason}")
    return False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args)
    files, folders_left_out = find_files(args.path, args.recurse)
    sources = read_sources(files)
    if not sources:
        LOGGER.error("No DICOM files to send")
        return EXIT_FAILED
    ae = AE(args.calling_aet)
    configure_timeouts(ae, args)
    for uid, syntaxes in requested_contexts([s for _, s in sources], args.syntax, args.required_contexts):
        ae.add_requested_context(uid, syntaxes)
    window = [AsyncOperationsWindow(args.async_ops, 1)] if args.async_ops != 1 else []
    assoc = ae.associate(args.addr, args.port, ae_title=args.called_aet, max_pdu=args.max_pdu, ext_neg=window)
    if not assoc.is_established:
        return EXIT_FAILED
    skipped = len(files) - len(sources) + folders_left_out  # not DICOM, unreadable, a folder
    stored = 0
    link = assoc.link
    progress = Progress(len(sources), sum(source.length for _, source in sources), lambda: link.bytes_sent, sys.stderr)
    try:
        for source, outcome in assoc.send_c_stores(source for _, source in sources):
            stored += was_stored(source.path, outcome)
            progress.advance()
    finally:
        progress.finish()  # the line ends before any error that follows it
    assoc.release()
    if stored < len(sources) or skipped:
        LOGGER.error(f"{stored} of {len(sources) + skipped} stored: the others failed or were skipped (see above)")
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    exit_process(main())
