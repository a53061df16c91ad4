"""Fixtures of the worker process tests: a test's router setup, the processes it starts, its announcers."""

from __future__ import annotations

import pytest

from tests.workers.harness import Announcer, RouterSetup


@pytest.fixture
def setup(tmp_path):
    return RouterSetup(tmp_path)


@pytest.fixture
def running():
    """Processes a test starts (workers and peers), all ended by pid at teardown."""
    started: dict[str, list] = {"workers": [], "peers": []}
    yield started
    for worker in started["workers"]:
        worker.kill()
    for peer in started["peers"]:
        peer.stop()


@pytest.fixture
def announcer_for():
    made = []

    def make(setup: RouterSetup, worker: int | None = None) -> Announcer:
        made.append(Announcer(setup, worker))
        return made[-1]

    yield make
    for announcer in made:
        announcer.close()
