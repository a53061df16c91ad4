"""One of our SCP apps with every thread under cProfile, and the printing of its profile.

    python -m bench.profiled_scp OUT.prof PORT [APP OPTIONS...]   (APP OPTIONS default: echoscp -q)

cProfile only follows the thread that enabled it and the engine serves each
association on a thread of its own, so each thread gets its own profiler; on
SIGTERM (or SIGINT) the server shuts down and the finished threads' profiles
are merged into OUT.prof. Used by `python -m bench.echo --profile` (echoscp) and
`python -m bench.store --profile` (storescp).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import signal
import sys
import threading

DEFAULT_APP = ("echoscp", "-q")


def format_stats(stats: pstats.Stats, title: str, top: int) -> str:
    """The `top` functions of a profile by own time, then by cumulative time."""
    out = []
    for order in ("tottime", "cumulative"):
        buffer = io.StringIO()
        stats.stream = buffer
        stats.sort_stats(order).print_stats(top)
        out.append(f"==== {title}: top {top} by {'own' if order == 'tottime' else 'cumulative'} time ====\n{buffer.getvalue()}")
    return "\n".join(out)


class ThreadProfiles:
    """While active, every thread started gets a profiler of its own (and the calling thread one, with
    `caller=True`); `dump` merges the finished ones into a file."""

    def __init__(self, caller: bool = False) -> None:
        self._finished: list[cProfile.Profile] = []
        self._lock = threading.Lock()
        self._caller = cProfile.Profile() if caller else None
        self._run = threading.Thread.run

    def __enter__(self) -> ThreadProfiles:
        run, finished, lock = self._run, self._finished, self._lock

        def profiled_run(thread: threading.Thread) -> None:
            profiler = cProfile.Profile()
            profiler.enable()
            try:
                run(thread)
            finally:
                profiler.disable()
                with lock:
                    finished.append(profiler)

        threading.Thread.run = profiled_run  # type: ignore[method-assign]
        if self._caller is not None:
            self._caller.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._caller is not None:
            self._caller.disable()
            self._finished.append(self._caller)
        threading.Thread.run = self._run  # type: ignore[method-assign]

    def dump(self, out: str) -> None:
        with self._lock:
            profiles = list(self._finished)
        if profiles:
            stats = pstats.Stats(profiles[0])
            for profiler in profiles[1:]:
                stats.add(profiler)
            stats.dump_stats(out)


def main() -> int:
    out, port = sys.argv[1], sys.argv[2]
    name, *options = sys.argv[3:] or DEFAULT_APP

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    from router.net.__main__ import main as app

    with ThreadProfiles() as profiles:
        try:
            app([name, port, *options])
        except KeyboardInterrupt:
            pass
    profiles.dump(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
