"""Property tests: reading and evaluating rules never raises, whatever the rules file or the data set holds,
and the guard index decides exactly what testing every condition in order decides."""

from __future__ import annotations

import tempfile
import warnings
from datetime import date, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import Dataset, config
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from router.config import load_config
from rules.conditions import Instance
from rules.evaluate import RuleSet
from rules.explain import Association, facts_of
from rules.ranges import Kind, parse
from rules.source import ConfigError
from tests.rules.support import DESTINATIONS, facts

pytestmark = [pytest.mark.timeout(60), pytest.mark.filterwarnings("ignore")]
PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Elements of every VR family the rules treat differently, and a private one.
ELEMENTS = {
    0x00080060: "CS", 0x00081030: "LO", 0x00080008: "CS", 0x00080020: "DA", 0x00080030: "TM", 0x0008002A: "DT",
    0x00200011: "IS", 0x00180050: "DS", 0x00280010: "US", 0x00100010: "PN", 0x00080080: "LO", 0x00091001: "LO",
    0x00280030: "DS", 0x00100020: "LO",
}
SEQUENCE = 0x00400275
KEYS = ["Modality", "StudyDescription", "ImageType", "StudyDate", "StudyTime", "AcquisitionDateTime", "SeriesNumber",
        "SliceThickness", "Rows", "PatientName", "(0008,0080)", "(0009,1001)", "PixelSpacing", "PatientID",
        "RequestAttributesSequence[*].ScheduledProcedureStepID", "RequestAttributesSequence[1].RequestedProcedureID",
        "calling_ae", "called_ae", "peer_ip", "sop_class", "transfer_syntax", "Modalty", "(zzzz,0000)", "", "any"]
TEXTS = st.sampled_from(["CT", "MR", "CHEST", "20240101", "2024-01-01", "0830", "12:00", "1", "2.5", "-3", "1e400",
                         "10.0.0.0/8", "SecondaryCaptureImageStorage", "(?i)ct", "[", "*", "", "\\", "nan"]) | st.text(
    max_size=12)
SCALARS = TEXTS | st.integers(-(2**40), 2**40) | st.floats(allow_nan=True) | st.booleans() | st.none()


def value_tests(inner):
    operators = st.sampled_from(["regex", "glob", "exists", "not", "gt", "ge", "lt", "le", "between", "bogus"])
    return SCALARS | st.lists(SCALARS, max_size=3) | st.dictionaries(operators, inner, max_size=3)


VALUES = st.recursive(SCALARS, value_tests, max_leaves=6)
WHEN = st.recursive(
    st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4),
    lambda inner: st.dictionaries(st.sampled_from(["any", "all", "not"] + KEYS), st.lists(inner, max_size=3) | inner,
                                  max_size=3),
    max_leaves=8,
)
RULES = st.lists(
    st.fixed_dictionaries(
        {"when": WHEN},
        optional={"forward": st.sampled_from([["pacs"], ["ai", "pacs"], ["nowhere"]]), "drop": st.booleans(),
                  "stop": st.booleans(),
                  "morph": st.sampled_from([[{"set": {"InstitutionName": "X"}}], [{"delete": ["Rows"]}]]),
                  "prefetch": st.just({"from": "pacs", "to": "WS", "match": {"PatientID": "{PatientID}"}}),
                  "once_per": st.sampled_from(["study", "series", "patient", "visit"])},
    ),
    max_size=6,
)


TEXT_VALUES = st.text(max_size=16) | st.lists(st.text(max_size=6), max_size=3)
CONVERTED = {  # values pydicom accepts in elements of these VRs (invalid bytes come from the raw elements)
    "IS": st.integers(-(2**31), 2**31 - 1) | st.lists(st.integers(-99, 99), max_size=3),
    "DS": st.floats(-1e6, 1e6, allow_nan=False) | st.lists(st.floats(-9, 9, allow_nan=False), max_size=3),
    "US": st.integers(0, 65535) | st.lists(st.integers(0, 65535), max_size=3),
}


@st.composite
def raw_elements(draw, tag: int, vr: str) -> RawDataElement | DataElement:
    """An element as a file gives it (raw bytes, explicit, implicit or UN) or as code sets it (any value)."""
    if draw(st.booleans()):
        value = draw(st.binary(max_size=24) | st.sampled_from([b"CT", b"20240101", b"A\\B ", b"12.5\x00", b""]))
        element_vr = draw(st.sampled_from([vr, None, "UN"]))
        return RawDataElement(BaseTag(tag), element_vr, len(value), value, 0, element_vr is None, True)
    value = draw(CONVERTED.get(vr, TEXT_VALUES) | st.none())
    return DataElement(tag, vr, value, validation_mode=config.IGNORE)


@st.composite
def datasets(draw, depth: int = 0) -> Dataset:
    dataset = Dataset()
    for tag in draw(st.sets(st.sampled_from(sorted(ELEMENTS)), max_size=len(ELEMENTS))):
        dataset._dict[BaseTag(tag)] = draw(raw_elements(tag, ELEMENTS[tag]))  # as dcmread stores them: unchecked
    if depth == 0 and draw(st.booleans()):
        items = draw(st.lists(datasets(depth=1), max_size=3))
        dataset._dict[BaseTag(SEQUENCE)] = DataElement(SEQUENCE, "SQ", Sequence(items), validation_mode=config.IGNORE)
    return dataset


def loaded(rules: list[dict]) -> RuleSet | None:
    """The rules written to a file and loaded: a RuleSet, or None when the checker refused them."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rules.yml"
        path.write_text(DESTINATIONS + yaml.safe_dump({"rules": rules}, allow_unicode=True))
        try:
            return RuleSet.compile(load_config(path).rules)
        except ConfigError:
            return None


def naive(rules: RuleSet, dataset: Dataset, calling_ae: str) -> tuple[str, ...]:
    """The matched rules by testing every condition of every rule in order, without the guard index."""
    instance, matched = Instance(facts(dataset, calling_ae=calling_ae)), []
    for compiled in rules.rules:
        if compiled.rule.when.compile()(instance):
            matched.append(compiled.rule.name)
            if compiled.rule.stop:
                break
    return tuple(matched)


WORDS = st.sampled_from(["CT", "MR", "CHEST", "HEAD", "A\\B", "SPS1", "x", "ORIGINAL", "AXIAL", "P1"])
TEXT_KEYS = ["Modality", "StudyDescription", "ImageType", "PatientName", "(0008,0080)", "(0009,1001)", "PatientID",
             "RequestAttributesSequence[*].ScheduledProcedureStepID", "calling_ae", "called_ae"]
BOUNDS = {
    "StudyDate": st.dates(date(1900, 1, 1)).map(lambda day: day.strftime("%Y%m%d")),
    "StudyTime": st.times().map(lambda moment: moment.strftime("%H%M%S")),
    "AcquisitionDateTime": st.datetimes(datetime(1900, 1, 1)).map(lambda moment: moment.strftime("%Y%m%d%H%M%S")),
    "SeriesNumber": st.integers(-50, 50), "SliceThickness": st.floats(-10, 10), "Rows": st.integers(0, 70000),
    "PixelSpacing": st.floats(0, 2),
}


def text_tests(inner):
    return st.one_of(
        WORDS, st.lists(WORDS, min_size=1, max_size=3), st.builds(lambda word: {"regex": f"^{word}|X"}, WORDS),
        st.builds(lambda word: {"glob": f"{word}*"}, WORDS), st.builds(lambda flag: {"exists": flag}, st.booleans()),
        st.builds(lambda test: {"not": test}, inner),
    )


TEXT_TESTS = st.recursive(WORDS, text_tests, max_leaves=3)


def range_tests(bound):
    ordered = st.lists(bound, min_size=2, max_size=2).map(sorted)
    return st.one_of(
        st.builds(lambda op, value: {op: value}, st.sampled_from(["gt", "ge", "lt", "le"]), bound),
        st.builds(lambda pair: {"between": pair}, ordered), bound,
    )


KEY_TESTS = st.one_of(
    st.tuples(st.sampled_from(TEXT_KEYS), TEXT_TESTS),
    *(st.tuples(st.just(key), range_tests(bound)) for key, bound in BOUNDS.items()),
    st.tuples(st.just("peer_ip"), st.sampled_from(["10.0.0.0/8", "10.1.2.3", ["192.168.0.0/16", "::1"]])),
    st.tuples(st.just("sop_class"), st.sampled_from(["CTImageStorage", "1.2.840.10008.5.1.4.1.1.7", {"glob": "*MR*"}])),
    st.tuples(st.just("transfer_syntax"), st.sampled_from(["ExplicitVRLittleEndian", "1.2.840.10008.1.2"])),
)
VALID_WHEN = st.recursive(
    st.lists(KEY_TESTS, max_size=3).map(dict),
    lambda inner: st.builds(lambda block, items, base: {**base, block: items if block != "not" else items[0]},
                            st.sampled_from(["any", "all", "not"]), st.lists(inner, min_size=1, max_size=3), inner),
    max_leaves=6,
)
VALID_RULES = st.lists(
    st.fixed_dictionaries({"when": VALID_WHEN, "forward": st.sampled_from([["pacs"], ["ai", "pacs"]])},
                          optional={"stop": st.booleans()}),
    min_size=1, max_size=8,
).map(lambda rules: [{"name": f"rule {index}", **rule} for index, rule in enumerate(rules)])


@PROPERTY
@given(rules=RULES)
def test_loading_arbitrary_rules_never_raises_but_config_errors(rules):
    ruleset = loaded(rules)
    assert ruleset is None or isinstance(ruleset, RuleSet)


@PROPERTY
@given(rules=VALID_RULES, dataset=datasets(), calling_ae=st.sampled_from(["CT1", "MR", ""]))
def test_evaluating_rules_on_arbitrary_data_sets_never_raises_and_the_index_changes_nothing(rules, dataset, calling_ae):
    ruleset = loaded(rules)
    if ruleset is None:  # a rule after an unconditional stop
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decision = ruleset.evaluate(facts(dataset, calling_ae=calling_ae))
        explained = ruleset.evaluate(facts(dataset, calling_ae=calling_ae), explain=True)
    assert decision == explained
    assert decision.matched == naive(ruleset, dataset, calling_ae)


ISSUE_RULES = [
    {"name": "chest", "when": {"Modality": "CT", "BodyPartExamined": ["CHEST", "THORAX"],
                               "StudyDescription": {"regex": "(?i)lung|chest"}, "calling_ae": {"glob": "CT*"},
                               "(0008,0080)": {"exists": True}}, "forward": ["ai", "pacs"]},
    {"name": "ranges", "when": {"StudyDate": {"between": ["2020-01-01", "2024-12-31"]}, "StudyTime": {"lt": "12:00"},
                                "AcquisitionDateTime": {"ge": "2024"}, "SeriesNumber": {"gt": 2},
                                "SliceThickness": {"le": 5}, "Rows": {"ge": 256}}, "forward": ["pacs"]},
    {"name": "nested", "when": {"RequestAttributesSequence[*].ScheduledProcedureStepID": {"glob": "SPS*"},
                                "(0009,1001)": {"not": {"regex": "^x"}}, "ImageType": ["AXIAL", "LOCALIZER"],
                                "any": [{"PatientName": {"exists": True}}, {"not": {"Modality": "MR"}}]},
     "forward": ["pacs"]},
    {"name": "priors", "when": {"Modality": "MR"}, "once_per": "study",
     "prefetch": {"from": "pacs", "to": "WS", "match": {"PatientID": "{PatientID}"}}},
    {"name": "rest", "forward": ["pacs"]},
]


@PROPERTY
@given(dataset=datasets())
def test_every_operator_on_arbitrary_data_sets_never_raises(dataset):
    ruleset = loaded(ISSUE_RULES)
    assert ruleset is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decision = ruleset.evaluate(facts(dataset), explain=True)
        _ = facts_of(dataset, Association("A", "B", "10.0.0.1"))
    assert decision.matched[-1] == "rest"
    assert decision.matched == naive(ruleset, dataset, "CT1")


@given(kind=st.sampled_from(list(Kind)), text=st.text(max_size=30))
def test_parsing_a_value_never_raises(kind, text):
    parse(kind, text)
