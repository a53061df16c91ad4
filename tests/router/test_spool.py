"""The spool's layout, names and durability."""

from __future__ import annotations

import os
import time

import pytest

from router.config import Durability
from router.spool import Spool, make_durable


def test_layout_and_names(tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.create()
    assert all(path.is_dir() for path in (spool.tmp, spool.incoming, spool.bus))
    first, second = spool.new_name("1.2.3"), spool.new_name("1.2.3")
    assert first != second and first.startswith("1.2.3.") and first.endswith(".dcm")
    assert spool.new_name("../../etc/passwd").startswith("....")  # only digits and dots survive
    assert spool.path_of(first) == spool.incoming / first
    with pytest.raises(ValueError):
        spool.path_of("../x.dcm")


def test_accepted_files_oldest_first_and_removal(tmp_path):
    spool = Spool(tmp_path)
    spool.create()
    names = [spool.new_name(f"1.2.{index}") for index in range(3)]
    for age, name in zip((30, 10, 20), names):
        path = spool.path_of(name)
        path.write_bytes(b"x")
        os.utime(path, (time.time() - age, time.time() - age))
    (spool.incoming / "partial.tmp").write_bytes(b"")
    assert list(spool.accepted()) == [names[0], names[2], names[1]]
    spool.remove(names[0])
    spool.remove(names[0])  # twice is harmless
    assert list(spool.accepted()) == [names[2], names[1]]


def test_clear_tmp_removes_partial_files(tmp_path):
    spool = Spool(tmp_path)
    spool.create()
    (spool.tmp / "partial").write_bytes(b"x")
    spool.clear_tmp()
    assert list(spool.tmp.iterdir()) == []



def test_fresh_tmp_empties_only_its_own_process_directory(tmp_path):
    spool = Spool(tmp_path)
    spool.create()
    mine, sibling = spool.fresh_tmp("listener-0"), spool.fresh_tmp("listener-1")
    (mine / "partial").write_bytes(b"x")
    (sibling / "receiving").write_bytes(b"y")
    assert spool.fresh_tmp("listener-0") == spool.tmp / "listener-0"
    assert list(mine.iterdir()) == [] and [p.name for p in sibling.iterdir()] == ["receiving"]

@pytest.mark.parametrize("durability", list(Durability))
def test_make_durable_keeps_the_bytes(tmp_path, durability):
    path = tmp_path / "f.dcm"
    path.write_bytes(b"data")
    make_durable(path, durability)
    assert path.read_bytes() == b"data"
