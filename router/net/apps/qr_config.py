"""qrscp's configuration: pynetdicom's qrscp ini layout, read into a `QRConfig`.

A `[DEFAULT]` section holds qrscp's own settings (`ae_title`, `port`,
`bind_address`, `max_pdu`, `acse_timeout`, `dimse_timeout`,
`network_timeout`, `instance_location`, `database_location`,
`log_identifier`, and our `maximum_associations` and `destination_timeout`);
every other section is a move destination named by its AE title, with its
`address` and `port`. Missing settings take pynetdicom's defaults (ours, their
own); relative locations are taken from the file's folder (from the current
folder when given on the command line). Values are read by the apps' option
parsers (`common.parse_*`), so a setting and its option take the same values.
Errors name the file, the section and the key.

`destination_timeout` bounds each wait on a move destination: to connect, for
its association answer, for each C-STORE response and for its release. Its
default (10 s) is well below the 30 s a requester waits by default for each
C-MOVE response (pynetdicom's movescu and ours; DCMTK's waits without limit),
so a destination that accepts the connection and then says nothing fails the
sub-operations, and the requester hears so, before it gives up.
`acse_timeout` and `dimse_timeout` keep their meaning for the associations
qrscp accepts.
"""

from __future__ import annotations

import os
from configparser import ConfigParser
from configparser import Error as ConfigParserError
from dataclasses import dataclass
from typing import Callable, TypeVar

from router.net.apps.common import parse_ae_title, parse_pdu_size, parse_port, parse_positive_int, parse_seconds
from router.net.values import validate_ae_title

T = TypeVar("T")

APP_SECTION = "DEFAULT"
IN_MEMORY = ":memory:"  # an SQLite database that lives as long as the process
LOCATIONS = ("instance_location", "database_location")
_NO_DEFAULT_SECTION = "\0"  # DEFAULT is read as a plain section: destinations must not inherit its port
DEFAULTS = {  # pynetdicom's default.ini, plus our association limit and move destination timeout
    "ae_title": "QRSCP",
    "port": "11112",
    "bind_address": "",
    "max_pdu": "16382",
    "acse_timeout": "30",
    "dimse_timeout": "30",
    "network_timeout": "30",
    "maximum_associations": "10",
    "instance_location": "instances",
    "database_location": "instances.sqlite",
    "log_identifier": "True",
    "destination_timeout": "10",
}
OVERRIDABLE = (  # settings a command-line option of the same name replaces
    "ae_title", "port", "bind_address", "max_pdu", "acse_timeout", "dimse_timeout", "network_timeout",
    "database_location", "instance_location", "destination_timeout",
)


class ConfigError(ValueError):
    """A configuration file qrscp cannot run with; the message names the file, section and key."""


@dataclass(frozen=True)
class Destination:
    """A move destination: where the AE titled like its section listens."""

    address: str
    port: int


@dataclass(frozen=True)
class QRConfig:
    """Everything qrscp runs with; locations are absolute (or the database ':memory:')."""

    ae_title: str
    port: int
    bind_address: str
    max_pdu: int
    acse_timeout: float
    dimse_timeout: float
    network_timeout: float
    maximum_associations: int
    destination_timeout: float
    instance_location: str
    database_location: str
    log_identifier: bool
    destinations: dict[str, Destination]


def load_config(path: str | None, overrides: dict[str, object] | None = None) -> QRConfig:
    """The settings of the file at `path` (built-in ones if None), `overrides` applied; ConfigError if bad."""
    parser = ConfigParser(default_section=_NO_DEFAULT_SECTION, interpolation=None)
    base = os.getcwd()
    if path is not None:
        try:
            if not parser.read(path):
                raise ConfigError(f"{path}: cannot read the configuration file")
        except ConfigParserError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        base = os.path.dirname(os.path.abspath(path))
    where = path or "built-in settings"
    settings = dict(DEFAULTS)
    if parser.has_section(APP_SECTION):
        settings.update(parser[APP_SECTION])
    for name, value in (overrides or {}).items():
        if value is not None:
            settings[name] = os.path.abspath(value) if name in LOCATIONS and value != IN_MEMORY else str(value)
    read = _Reader(where, APP_SECTION, settings)
    return QRConfig(
        ae_title=read.value("ae_title", parse_ae_title),
        port=read.value("port", parse_port),
        bind_address=settings["bind_address"].strip(),
        max_pdu=read.value("max_pdu", parse_pdu_size),
        acse_timeout=read.value("acse_timeout", parse_seconds),
        dimse_timeout=read.value("dimse_timeout", parse_seconds),
        network_timeout=read.value("network_timeout", parse_seconds),
        maximum_associations=read.value("maximum_associations", parse_positive_int),
        destination_timeout=read.value("destination_timeout", parse_seconds),
        instance_location=os.path.join(base, settings["instance_location"]),
        database_location=_database(base, settings["database_location"]),
        log_identifier=read.flag("log_identifier"),
        destinations=_destinations(parser, where),
    )


def _database(base: str, location: str) -> str:
    return location if location == IN_MEMORY else os.path.join(base, location)


def _destinations(parser: ConfigParser, where: str) -> dict[str, Destination]:
    destinations = {}
    for section in parser.sections():
        if section == APP_SECTION:
            continue
        read = _Reader(where, section, parser[section])
        title = read.ae_title_of_section()
        destinations[title] = Destination(read.text("address"), read.value("port", parse_port))
    return destinations


class _Reader:
    """Typed values of one section, with errors that say where they are."""

    def __init__(self, where: str, section: str, values) -> None:
        self.where, self.section, self.values = where, section, values

    def _error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.where}: [{self.section}] {key}: {problem}")

    def text(self, key: str) -> str:
        value = self.values.get(key, "").strip()
        if not value:
            raise self._error(key, "missing")
        return value

    def value(self, key: str, parse: Callable[[str], T]) -> T:
        """The value of `key` as `parse` reads it (the apps' option parsers: the same limits)."""
        text = self.text(key)
        try:
            return parse(text)
        except ValueError as exc:
            raise self._error(key, str(exc)) from None

    def flag(self, key: str) -> bool:
        text = self.text(key).lower()
        if text not in ConfigParser.BOOLEAN_STATES:
            raise self._error(key, f"'{text}' is not true or false")
        return ConfigParser.BOOLEAN_STATES[text]

    def ae_title_of_section(self) -> str:
        try:
            return validate_ae_title(self.section)
        except ValueError as exc:
            raise ConfigError(f"{self.where}: [{self.section}]: a move destination is named by its AE title: {exc}") from None
