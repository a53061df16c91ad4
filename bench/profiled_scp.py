"""Our echoscp with every thread under cProfile: `python bench/profiled_scp.py OUT.prof PORT`.

cProfile only follows the thread that enabled it and the engine serves each
association on a thread of its own, so each thread gets its own profiler; on
SIGTERM (or SIGINT) the server shuts down and the finished threads' profiles
are merged into OUT.prof. Used by `python -m bench.echo --profile`.
"""

from __future__ import annotations

import cProfile
import pstats
import signal
import sys
import threading


def main() -> int:
    out, port = sys.argv[1], sys.argv[2]
    finished: list[cProfile.Profile] = []
    lock = threading.Lock()
    run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            run(self)
        finally:
            profiler.disable()
            with lock:
                finished.append(profiler)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    signal.signal(signal.SIGTERM, stop)
    from router.net.__main__ import main as app

    try:
        app(["echoscp", port, "-q"])
    except KeyboardInterrupt:
        pass
    with lock:
        profiles = list(finished)
    if profiles:
        stats = pstats.Stats(profiles[0])
        for profiler in profiles[1:]:
            stats.add(profiler)
        stats.dump_stats(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
