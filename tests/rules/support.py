"""Shared helpers of the rules tests: a config file from a rules snippet, facts, problems as 'line:column message'."""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import pytest
from pydicom import Dataset

from router.config import Config, load_config
from rules.evaluate import InstanceFacts, RuleSet
from rules.source import ConfigError

CT = "1.2.840.10008.5.1.4.1.1.2"
SC = "1.2.840.10008.5.1.4.1.1.7"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DESTINATIONS = """\
destinations:
  pacs: {address: '127.0.0.1:4242', ae_title: PACS}
  ai: {address: '127.0.0.1:4243', ae_title: AI}
  archive: {folder: ./archive}
"""
DESTINATION_LINES = DESTINATIONS.count("\n")  # a rules snippet starts on the line after these and 'rules:'


def write(folder: Path, rules: str, destinations: str = DESTINATIONS) -> Path:
    path = folder / "rules.yml"
    path.write_text(destinations + "rules:\n" + textwrap.dedent(rules).strip("\n") + "\n")
    return path


def load(folder: Path, rules: str) -> Config:
    return load_config(write(folder, rules))


def compiled(folder: Path, rules: str) -> RuleSet:
    return RuleSet.compile(load(folder, rules).rules)


def problems(folder: Path, rules: str) -> list[str]:
    """Each problem as 'line:column message (hint)', lines counted from the first line of the snippet."""
    with pytest.raises(ConfigError) as caught:
        load(folder, rules)
    offset = DESTINATION_LINES + 1
    return [f"{p.position.line - offset}:{p.position.column} {p.message}" + (f" ({p.hint})" if p.hint else "")
            for p in caught.value.problems]


def facts(header: Dataset | None = None, *, sop_class: str = CT, calling_ae: str = "CT1", called_ae: str = "ROUTER",
          peer: str = "10.1.2.3", syntax: str = EXPLICIT_LE) -> InstanceFacts:
    return InstanceFacts(sop_class, "1.2.3.4", syntax, calling_ae, called_ae, peer, header)


def header(**elements: object) -> Dataset:
    """A data set of these elements; invalid values (tests write some on purpose) raise no warning."""
    dataset = Dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for keyword, value in elements.items():
            setattr(dataset, keyword, value)
    return dataset
