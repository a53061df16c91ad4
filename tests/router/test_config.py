"""The config file: defaults, every key read, and every problem reported with its line and column."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from router.config import Address, DicomDestination, Durability, FolderDestination, RetryPolicy, load_config
from rules.source import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "router.yml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    return [f"{p.position.line}:{p.position.column} {p.message}" for p in caught.value.problems]


def test_the_issue_example_reads_every_key(tmp_path):
    config = load_config(write(tmp_path, """
        router:
          ae_title: ROUTER
          listen: 0.0.0.0:11112
          listeners: 2
          workers: 3
          spool: ./spool
          durability: flush
          max_pdu: 65536
          allowed_calling_ae: [CT1, MR1]
          bus: tcp://127.0.0.1:5555
        destinations:
          pacs:
            address: 127.0.0.1:4242
            ae_title: ORTHANC
            max_associations: 2
            retry: {attempts: 10, backoff: 5s, max_backoff: 10m}
          archive:
            folder: ./archive
        rules:
          - name: everything to the PACS
            forward: [pacs]
    """))
    router = config.router
    assert (router.ae_title, router.listen, router.listeners, router.workers) == ("ROUTER", Address("0.0.0.0", 11112), 2, 3)
    assert router.spool == tmp_path.resolve() / "spool"
    assert router.durability is Durability.FLUSH
    assert (router.max_pdu, router.allowed_calling_ae, router.bus) == (65536, ("CT1", "MR1"), "tcp://127.0.0.1:5555")
    assert config.destinations["pacs"] == DicomDestination(
        "pacs", Address("127.0.0.1", 4242), "ORTHANC", 2, RetryPolicy(10, 5.0, 600.0)
    )
    assert config.destinations["archive"] == FolderDestination("archive", tmp_path.resolve() / "archive")
    assert [(rule.name, rule.forward) for rule in config.rules] == [("everything to the PACS", ("pacs",))]
    assert config.rules[0].position.line == 20


def test_defaults(tmp_path):
    config = load_config(write(tmp_path, """
        destinations:
          a: {folder: out}
        rules:
          - {name: all, forward: a}
    """))
    assert config.router.ae_title == "ROUTER"
    assert config.router.listen == Address("0.0.0.0", 11112)
    assert config.router.durability is Durability.FSYNC
    assert config.router.listeners >= 1 and config.router.workers >= 1
    assert config.rules[0].forward == ("a",)


def test_every_problem_at_once_with_line_and_column(tmp_path):
    found = problems(tmp_path, """
        router:
          ae_titel: ROUTER
          listen: localhost
          workers: 0
          durability: sometimes
          max_pdu: 100
        destinations:
          pacs:
            address: 127.0.0.1:99999
            ae_title: THIS_TITLE_IS_WAY_TOO_LONG
            retry: {attempts: 0, backoff: soon}
          both: {address: 1.2.3.4:104, folder: x}
          nowhere: {ae_title: X}
        rules:
          - name: x
            forward: [pacz]
          - name: idle
          - 5
    """)
    assert found == [
        "2:3 unknown key 'ae_titel' in router",
        "3:11 listen must be 'host:port' with a port from 1 to 65535, not 'localhost'",
        "4:12 workers must be a whole number >= 1",
        "5:15 durability must be one of fsync, flush, none",
        "6:12 max_pdu must be 0 (no limit) or at least 4096",
        "9:14 destinations.pacs.address must be 'host:port' with a port from 1 to 65535, not '127.0.0.1:99999'",
        "10:15 destinations.pacs.ae_title: Invalid AE title 'THIS_TITLE_IS_WAY_TOO_LONG': 26 characters, at most 16",
        "11:23 destinations.pacs.retry.attempts must be a whole number >= 1",
        "11:35 destinations.pacs.retry.backoff must be a duration such as 30, 5s, 250ms, 10m or 2h",
        "12:9 destination 'both' has both an address and a folder",
        "13:12 destination 'nowhere' has no address and no folder",
        "16:15 rule 'x' forwards to unknown destination 'pacz'",
        "17:5 rule 'idle' does nothing",
        "18:5 rule 3 must be a mapping with a name and what to do",
    ]


def test_hints_name_the_closest_key_and_destination(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, """
            router: {ae_titel: X}
            destinations: {pacs: {address: '1.2.3.4:104', ae_title: P}}
            rules: [{name: r, forward: [pacz]}]
        """))
    hints = [problem.hint for problem in caught.value.problems]
    assert hints == ["did you mean 'ae_title'?", "did you mean 'pacs'?"]
    assert str(caught.value).startswith(f"{tmp_path / 'router.yml'}:1:10: unknown key 'ae_titel' in router")


def test_invalid_yaml_and_missing_file_name_where(tmp_path):
    assert problems(tmp_path, "router: {ae_title: [unclosed\n") == ["2:1 not valid YAML: expected ',' or ']', but got '<stream end>'"]
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yml")
    assert "cannot read the file" in caught.value.problems[0].message


def test_durations_and_ipv6_addresses(tmp_path):
    config = load_config(write(tmp_path, """
        destinations:
          pacs:
            address: '[::1]:104'
            ae_title: PACS
            retry: {backoff: 250ms, max_backoff: 2h}
        rules: [{name: r, forward: pacs}]
    """))
    destination = config.destinations["pacs"]
    assert destination.address == Address("::1", 104)
    assert destination.retry == RetryPolicy(10, 0.25, 7200.0)


@pytest.mark.parametrize(
    "written, limit",
    [("1000", 1000), ("10GB", 10 * 10**9), ("1.5 MiB", 3 << 19), ("500kb", 500_000), ("2TiB", 2 << 40), ("7B", 7)],
)
def test_spool_limit_sizes(tmp_path, written, limit):
    config = load_config(write(tmp_path, f"""
        router: {{spool_limit: '{written}'}}
        destinations: {{a: {{folder: out}}}}
        rules: [{{name: r, forward: a}}]
    """))
    assert config.router.spool_limit == limit


def test_no_spool_limit_by_default_and_bad_sizes_are_problems(tmp_path):
    assert load_config(write(tmp_path, "destinations: {a: {folder: o}}\nrules: [{name: r, forward: a}]\n")).router.spool_limit is None
    for bad in ("lots", "0", "10 XB", "-5MB", "[1]"):
        assert problems(tmp_path, f"router: {{spool_limit: {bad}}}\nrules: []\n") == [
            "1:23 spool_limit must be a size such as 500MB, 10GB, 2GiB or a number of bytes"
        ], bad


def test_router_check_command(tmp_path):
    good = subprocess.run(
        [sys.executable, "-m", "router", "check", str(ROOT / "examples" / "rules.yml")],
        capture_output=True, text=True, timeout=30,
    )
    assert good.returncode == 0, good.stderr
    assert "OK" in good.stdout
    bad = write(tmp_path, "rules: [{name: r, forward: [nowhere]}]\n")
    result = subprocess.run([sys.executable, "-m", "router", "check", str(bad)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"{bad}:1:29: rule 'r' forwards to unknown destination 'nowhere'" in result.stderr
