"""`python -m workers CONFIG --index N [--log-json]`: one worker process, as the supervisor starts it."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from router.config import ConfigError
from router.logs import setup_logging
from workers.worker import Timing, Worker, WorkerError

LOGGER = logging.getLogger("workers")
EXIT_USAGE = 2  # what argparse exits with too
EXIT_CONFIG = 78  # EX_CONFIG: the config file cannot be used


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m workers", description="A dicom-router worker process.")
    parser.add_argument("config", type=Path, help="the router's config file")
    parser.add_argument("--index", type=int, required=True, help="this worker's index (0 .. router.workers - 1)")
    parser.add_argument("--log-json", action="store_true", help="log JSON lines instead of plain text")
    defaults = Timing()
    parser.add_argument("--scan-interval", type=float, default=defaults.scan_interval, help="seconds between spool scans")
    parser.add_argument("--scan-grace", type=float, default=defaults.scan_grace, help="age in seconds of a spool file a scan records")
    parser.add_argument(
        "--refresh-interval", type=float, default=defaults.refresh_interval,
        help="seconds between looks at the queue for jobs another process changed",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    setup_logging(arguments.log_json, f"worker-{arguments.index}")
    timing = Timing(
        scan_interval=arguments.scan_interval, scan_grace=arguments.scan_grace, refresh_interval=arguments.refresh_interval
    )
    try:
        worker = Worker(arguments.config, arguments.index, timing)
    except ConfigError as error:
        for problem in error.problems:
            LOGGER.error(f"config: {problem}")
        return EXIT_CONFIG
    except WorkerError as error:
        LOGGER.error(str(error))
        return EXIT_USAGE
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
