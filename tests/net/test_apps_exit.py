"""How an app's process ends (`router.net.apps.common.exit_process`): code, output, threads; --version."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from importlib import metadata

import pytest

TIMEOUT = 30


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=TIMEOUT)


def test_exit_process_keeps_the_code_and_flushes_what_was_printed_and_logged():
    done = run_python(
        """
        import logging, sys
        from router.net.apps.common import exit_process
        logging.basicConfig(stream=sys.stderr, format="%(message)s")
        print("printed, not yet flushed", end="")
        logging.getLogger("app").error("logged")
        exit_process(3)
        """
    )
    assert (done.returncode, done.stdout, done.stderr) == (3, "printed, not yet flushed", "logged\n")


def test_exit_process_with_a_thread_still_running_waits_for_it():
    done = run_python(
        """
        import threading, time
        from router.net.apps.common import exit_process
        threading.Thread(target=lambda: (time.sleep(0.3), print("thread finished"))).start()
        exit_process(0)
        """
    )
    assert (done.returncode, done.stdout) == (0, "thread finished\n")


def test_an_app_run_as_a_module_exits_with_its_status():
    usage = subprocess.run([sys.executable, "-m", "router.net", "nosuchapp"], capture_output=True, text=True, timeout=TIMEOUT)
    refused = subprocess.run(
        [sys.executable, "-m", "router.net", "echoscu", "127.0.0.1", "1"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert usage.returncode == 2 and "usage: python -m router.net" in usage.stderr
    assert refused.returncode != 0 and refused.stderr  # port 1 refuses: said, and a failure status


@pytest.mark.parametrize("app", ["echoscu", "echoscp", "storescu", "storescp", "findscu", "getscu", "movescu", "qrscp"])
def test_version_prints_the_app_and_the_package_version(app, capsys):
    module = importlib.import_module(f"router.net.apps.{app}")
    with pytest.raises(SystemExit) as exited:
        module.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"{app} {metadata.version('dicom-router')}\n"
