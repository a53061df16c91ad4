"""Rule evaluation speed: 50 rules over realistic headers, median time per instance (target: under 50 µs).

The rules mix every kind of condition a routing config uses (equality, lists,
regex, glob, ranges on dates and numbers, private tags, sequence paths, facts,
CIDR, any/not blocks; most of them keyed, as in real configs, by an equality
on Modality, a body part, a private creator or the SOP class) and end with a
catch-all. Each measured instance is a header freshly read from
bytes with pydicom (as `rules.evaluate.read_header` reads it for the worker),
so the figure includes reading the elements the rules look at the first time,
with the caches as reading a header leaves them; reading the file itself is
not timed. The figure judged against the target
is the median CPU time of the evaluating thread (what an evaluation costs);
the wall-clock median, which other work on the machine inflates, is printed
beside it. `python -m bench.rules [--instances N] [--rounds R]`.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import yaml
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.sequence import Sequence

from router.config import load_config
from rules.evaluate import DEFER_SIZE, InstanceFacts, RuleSet

TARGET_MEDIAN_US = 50.0
SOURCES = ("CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "SC_rgb_small_odd.dcm")  # shipped with pydicom
MODALITIES = ("CT", "MR", "US", "CR", "DX", "MG", "PT", "NM", "XA", "OT")
CALLING = ("CT1", "CT2", "MR1", "USROOM", "CTLAB", "PACS", "WS12")
DESCRIPTIONS = ("CT CHEST W/O", "MR BRAIN", "US ABDOMEN", "Lung screening", "KNEE LEFT", "PET WHOLE BODY")
BODY_PARTS = ("CHEST", "HEAD", "ABDOMEN", "KNEE", "THORAX")
RULE_COUNT = 50


def rule_conditions(index: int) -> dict:
    """The `when:` of rule `index`: seven kinds of rule, cycled through."""
    modality = MODALITIES[index % len(MODALITIES)]
    kinds = (
        {"Modality": modality, "calling_ae": {"glob": f"{modality}*"}},
        {"StudyDescription": {"regex": f"(?i)knee|{modality.lower()}x"}, "BodyPartExamined": ["KNEE", "LEG", "FOOT"]},
        {"StudyDate": {"between": ["2019-01-01", "2019-12-31"]}, "SeriesNumber": {"ge": index}, "Modality": modality},
        {"(0009,0010)": f"GEMS_IDEN_{index:02d}", "Modality": modality},
        {"Modality": modality, "RequestAttributesSequence[*].ScheduledProcedureStepID": {"glob": f"SPS{index}*"}},
        {"any": [{"Modality": modality}, {"calling_ae": f"X{index}"}], "not": {"InstitutionName": {"exists": False}},
         "peer_ip": f"10.{index}.0.0/16"},
        {"sop_class": "SecondaryCaptureImageStorage", "ImageType": {"regex": f"^DERIVED{index}"}},
    )
    return kinds[index % len(kinds)]


def config_text() -> str:
    """A config with 50 rules of every kind, the last one a catch-all."""
    rules: list[dict] = [{"name": f"rule {index}", "when": rule_conditions(index), "forward": ["pacs"]}
                         for index in range(RULE_COUNT - 1)]
    for rule in rules[1::7]:
        rule["morph"] = [{"set": {"InstitutionName": "Routed"}}, {"delete": ["OtherPatientIDs"]}]
    rules.append({"name": "everything", "forward": ["archive"]})
    destinations = {"pacs": {"address": "127.0.0.1:104", "ae_title": "PACS"}, "archive": {"folder": "out"}}
    return yaml.safe_dump({"destinations": destinations, "rules": rules}, sort_keys=False)


def realistic_headers(count: int) -> list[bytes]:
    """`count` Part 10 files (as bytes) from pydicom's test data, varied like a day's traffic."""
    bases = [dcmread(get_testdata_file(name, download=False)) for name in SOURCES]
    files = []
    for index in range(count):
        dataset = copy.deepcopy(bases[index % len(bases)])
        dataset.Modality = MODALITIES[index % len(MODALITIES)]
        dataset.StudyDescription = DESCRIPTIONS[index % len(DESCRIPTIONS)]
        dataset.BodyPartExamined = BODY_PARTS[index % len(BODY_PARTS)]
        dataset.InstitutionName = "General Hospital"
        dataset.AccessionNumber = f"ACC{index:06d}"
        dataset.StudyDate = f"20{18 + index % 4}0{1 + index % 9}15"
        dataset.SeriesNumber = index % 40
        dataset.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        dataset.add_new(0x00090010, "LO", "GEMS_IDEN_01")
        dataset.add_new(0x00091001, "LO", f"private {index}")
        item = Dataset()
        item.ScheduledProcedureStepID = f"SPS{index}"
        item.RequestedProcedureID = f"RP{index}"
        dataset.RequestAttributesSequence = Sequence([item])
        buffer = BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        files.append(buffer.getvalue())
    return files


@dataclass
class Timings:
    """Per evaluation: the CPU time of this thread (what evaluating costs) and the wall-clock time (what it took)."""

    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)


def measure(rules: RuleSet, files: list[bytes], rounds: int) -> Timings:
    """Seconds per evaluation, one per (round, file), each on a freshly read header."""
    timings = Timings()
    for round_ in range(rounds):
        for index, data in enumerate(files):
            header = dcmread(BytesIO(data), stop_before_pixels=True, defer_size=DEFER_SIZE)  # as read_header does
            facts = InstanceFacts(str(header.SOPClassUID), str(header.SOPInstanceUID), "1.2.840.10008.1.2.1",
                                  CALLING[(index + round_) % len(CALLING)], "ROUTER", f"10.{index % 60}.1.2", header)
            cpu, wall = time.thread_time_ns(), time.perf_counter_ns()
            rules.evaluate(facts)
            timings.wall.append((time.perf_counter_ns() - wall) / 1e9)
            timings.cpu.append((time.thread_time_ns() - cpu) / 1e9)
    return timings


def compiled_rules() -> RuleSet:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rules.yml"
        path.write_text(config_text())
        return RuleSet.compile(load_config(path).rules)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rules", description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200, help="distinct headers (default 200)")
    parser.add_argument("--rounds", type=int, default=5, help="times each header is evaluated (default 5)")
    args = parser.parse_args(argv)
    rules = compiled_rules()
    files = realistic_headers(args.instances)
    measure(rules, files[:20], 1)  # warm-up
    load = os.getloadavg()[0]
    timings = measure(rules, files, args.rounds)
    cpu, wall = statistics.median(timings.cpu) * 1e6, statistics.median(timings.wall) * 1e6
    p90 = statistics.quantiles(timings.cpu, n=10)[-1] * 1e6
    verdict = "OK" if cpu < TARGET_MEDIAN_US else "OVER TARGET"
    print(f"rule evaluation: {len(rules.rules)} rules, {len(timings.cpu)} evaluations of {len(files)} headers: "
          f"median {cpu:.1f} µs CPU per instance (p90 {p90:.1f} µs), {wall:.1f} µs wall clock; "
          f"target < {TARGET_MEDIAN_US:.0f} µs: {verdict}")
    print(f"load average (1 min) {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end "
          "(other processes on the machine slow both figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
