"""The Query/Retrieve information models (PS3.4 C.6): levels, keys, identifiers and matches.

An instance is a `Record`: its key attributes by keyword. A request
identifier becomes a `Query` (`find_query` for C-FIND, `retrieve_query` for
C-GET and C-MOVE), checked against the model's hierarchy: the unique keys of
the levels above the Query/Retrieve Level must be given, keys of lower levels
must not. `find_matches` groups instances into the entities of the query's
level (a study is the instances that share a Study Instance UID), adds the
counts and lists the model defines for that level, and keeps the entities
that match; `find_response` is the identifier sent back for one of them.
Pure: no database, no bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from router.net import sop_class
from router.net.apps.qr_match import UNIVERSAL, Condition, Values, compile_condition

Record = Mapping[str, Values]

QUERY_RETRIEVE_LEVEL = "QueryRetrieveLevel"
SPECIFIC_CHARACTER_SET = "SpecificCharacterSet"
RETRIEVE_AE_TITLE = "RetrieveAETitle"
NOT_MATCHED = frozenset({QUERY_RETRIEVE_LEVEL, SPECIFIC_CHARACTER_SET, RETRIEVE_AE_TITLE})
"""Identifier attributes that are never keys: the level, the character set, and where to retrieve
from (the SCP fills in its own AE title)."""


class Level(Enum):
    """A Query/Retrieve Level, from the top of the hierarchy down."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"

    @property
    def depth(self) -> int:
        return _DEPTH[self]


_DEPTH = {level: depth for depth, level in enumerate(Level)}


class IdentifierError(ValueError):
    """A request identifier that does not fit the information model (status 0xA900)."""


@dataclass(frozen=True)
class Key:
    """An attribute the index keeps for every instance, and the level of the entity it describes."""

    keyword: str
    level: Level
    unique: bool = False


@dataclass(frozen=True)
class Aggregate:
    """An attribute computed over an entity's instances: how many distinct `source` values, or which."""

    keyword: str
    level: Level
    source: str
    count: bool

    def values(self, instances: Sequence[Record]) -> Values:
        distinct = sorted({value for instance in instances for value in instance.get(self.source, ())})
        return (str(len(distinct)),) if self.count else tuple(distinct)


STORED_KEYS: tuple[Key, ...] = (
    Key("PatientID", Level.PATIENT, unique=True),
    Key("PatientName", Level.PATIENT),
    Key("PatientBirthDate", Level.PATIENT),
    Key("PatientSex", Level.PATIENT),
    Key("StudyInstanceUID", Level.STUDY, unique=True),
    Key("StudyDate", Level.STUDY),
    Key("StudyTime", Level.STUDY),
    Key("AccessionNumber", Level.STUDY),
    Key("StudyID", Level.STUDY),
    Key("StudyDescription", Level.STUDY),
    Key("ReferringPhysicianName", Level.STUDY),
    Key("SeriesInstanceUID", Level.SERIES, unique=True),
    Key("Modality", Level.SERIES),
    Key("SeriesNumber", Level.SERIES),
    Key("SeriesDescription", Level.SERIES),
    Key("SOPInstanceUID", Level.IMAGE, unique=True),
    Key("SOPClassUID", Level.IMAGE),
    Key("InstanceNumber", Level.IMAGE),
)
AGGREGATES: tuple[Aggregate, ...] = (
    Aggregate("NumberOfPatientRelatedStudies", Level.PATIENT, "StudyInstanceUID", count=True),
    Aggregate("NumberOfPatientRelatedSeries", Level.PATIENT, "SeriesInstanceUID", count=True),
    Aggregate("NumberOfPatientRelatedInstances", Level.PATIENT, "SOPInstanceUID", count=True),
    Aggregate("NumberOfStudyRelatedSeries", Level.STUDY, "SeriesInstanceUID", count=True),
    Aggregate("NumberOfStudyRelatedInstances", Level.STUDY, "SOPInstanceUID", count=True),
    Aggregate("ModalitiesInStudy", Level.STUDY, "Modality", count=False),
    Aggregate("SOPClassesInStudy", Level.STUDY, "SOPClassUID", count=False),
    Aggregate("NumberOfSeriesRelatedInstances", Level.SERIES, "SOPInstanceUID", count=True),
)
STORED_KEYWORDS: tuple[str, ...] = tuple(key.keyword for key in STORED_KEYS) + (SPECIFIC_CHARACTER_SET,)
"""What the index reads from each instance: the keys, and the character set their values came in."""

UNIQUE_KEYS: dict[Level, str] = {key.level: key.keyword for key in STORED_KEYS if key.unique}
_STORED: dict[str, Key] = {key.keyword: key for key in STORED_KEYS}
_AGGREGATES: dict[str, Aggregate] = {aggregate.keyword: aggregate for aggregate in AGGREGATES}


@dataclass(frozen=True)
class InformationModel:
    """A Q/R information model: its levels, top first (PS3.4 C.6.1, C.6.2, C.6.3)."""

    name: str
    levels: tuple[Level, ...]

    def level_of(self, keyword: str) -> Level | None:
        """The level whose entities carry `keyword` in this model, None if the model has no such key.

        Keys of levels above the model's top belong to its top level (Study Root's studies
        carry the patient's attributes); an aggregate exists only at its own level.
        """
        key = _STORED.get(keyword)
        if key is not None:
            if key.level in self.levels:
                return key.level
            return self.levels[0] if key.level.depth < self.levels[0].depth else None
        aggregate = _AGGREGATES.get(keyword)
        return aggregate.level if aggregate is not None and aggregate.level in self.levels else None

    def levels_down_to(self, level: Level) -> tuple[Level, ...]:
        return tuple(item for item in self.levels if item.depth <= level.depth)


PATIENT_ROOT = InformationModel("Patient Root", (Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE))
STUDY_ROOT = InformationModel("Study Root", (Level.STUDY, Level.SERIES, Level.IMAGE))
PATIENT_STUDY_ONLY = InformationModel("Patient/Study Only", (Level.PATIENT, Level.STUDY))

MODELS: dict[str, InformationModel] = {
    sop_class.PatientRootQueryRetrieveInformationModelFind: PATIENT_ROOT,
    sop_class.PatientRootQueryRetrieveInformationModelGet: PATIENT_ROOT,
    sop_class.PatientRootQueryRetrieveInformationModelMove: PATIENT_ROOT,
    sop_class.StudyRootQueryRetrieveInformationModelFind: STUDY_ROOT,
    sop_class.StudyRootQueryRetrieveInformationModelGet: STUDY_ROOT,
    sop_class.StudyRootQueryRetrieveInformationModelMove: STUDY_ROOT,
    sop_class.PatientStudyOnlyQueryRetrieveInformationModelFind: PATIENT_STUDY_ONLY,
    sop_class.PatientStudyOnlyQueryRetrieveInformationModelGet: PATIENT_STUDY_ONLY,
    sop_class.PatientStudyOnlyQueryRetrieveInformationModelMove: PATIENT_STUDY_ONLY,
}
"""The model behind each Q/R SOP class this module serves."""


@dataclass(frozen=True)
class ReturnKey:
    """An attribute the response identifier carries: `keyword` None when we do not support it."""

    tag: BaseTag
    vr: str
    keyword: str | None


@dataclass(frozen=True)
class Query:
    """A checked request: the level, a condition per key, and what to send back (C-FIND)."""

    model: InformationModel
    level: Level
    conditions: Mapping[str, Condition]
    return_keys: tuple[ReturnKey, ...] = ()

    @property
    def unsupported(self) -> tuple[ReturnKey, ...]:
        """Keys we return empty: a match then has status 0xFF01 rather than 0xFF00."""
        return tuple(key for key in self.return_keys if key.keyword is None)

    def accepts(self, record: Record) -> bool:
        return all(condition.matches(record.get(keyword, ())) for keyword, condition in self.conditions.items())


def find_query(identifier: Dataset, model: InformationModel) -> Query:
    """The C-FIND query `identifier` asks for; IdentifierError if it does not fit `model`."""
    level = _level(identifier, model)
    conditions: dict[str, Condition] = {}
    return_keys = []
    for element in identifier:
        keyword = element.keyword
        if keyword in NOT_MATCHED:
            continue
        key_level = model.level_of(keyword) if element.VR != "SQ" else None
        if key_level is not None and key_level.depth > level.depth:
            raise IdentifierError(f"{keyword} is a {key_level.value} key, below the {level.value} level of the query")
        if key_level is not None and (keyword in _STORED or key_level is level):
            conditions[keyword] = compile_condition(element.VR, element.value)
        else:
            keyword = None  # a sequence, a key we do not keep, or another level's count
        return_keys.append(ReturnKey(element.tag, element.VR, keyword))
    _require_unique_keys(model, model.levels_down_to(level)[:-1], conditions)
    return Query(model, level, conditions, tuple(return_keys))


def retrieve_query(identifier: Dataset, model: InformationModel) -> Query:
    """The C-GET/C-MOVE query: the unique keys of the level and those above (other keys are ignored)."""
    level = _level(identifier, model)
    conditions = {}
    for item in model.levels_down_to(level):
        keyword = UNIQUE_KEYS[item]
        if keyword in identifier:
            conditions[keyword] = compile_condition(identifier[keyword].VR, identifier[keyword].value)
    _require_unique_keys(model, model.levels_down_to(level), conditions)
    return Query(model, level, conditions)


def _level(identifier: Dataset, model: InformationModel) -> Level:
    value = str(identifier.get(QUERY_RETRIEVE_LEVEL, "") or "").strip()
    if not value:
        raise IdentifierError("the identifier has no Query/Retrieve Level")
    level = next((item for item in model.levels if item.value == value), None)
    if level is None:
        allowed = ", ".join(item.value for item in model.levels)
        raise IdentifierError(f"Query/Retrieve Level '{value}' is not one of the {model.name} levels ({allowed})")
    return level


def _require_unique_keys(model: InformationModel, levels: Iterable[Level], conditions: Mapping[str, Condition]) -> None:
    for level in levels:
        keyword = UNIQUE_KEYS[level]
        if conditions.get(keyword, UNIVERSAL) is UNIVERSAL:
            raise IdentifierError(f"the {level.value} level's unique key {keyword} needs a value ({model.name})")


def find_matches(query: Query, instances: Iterable[Record]) -> list[Record]:
    """The entities at the query's level that the instances make up and that match, in first-seen order."""
    levels = query.model.levels_down_to(query.level)
    groups: dict[tuple[Values, ...], list[Record]] = {}
    for instance in instances:
        groups.setdefault(tuple(instance.get(UNIQUE_KEYS[level], ()) for level in levels), []).append(instance)
    entities = (_entity(query, members) for members in groups.values())
    return [entity for entity in entities if query.accepts(entity)]


def _entity(query: Query, instances: Sequence[Record]) -> Record:
    """The entity's attributes: its first instance's stored keys, and its counts and lists."""
    entity = dict(instances[0])
    for aggregate in AGGREGATES:
        if query.model.level_of(aggregate.keyword) is query.level:
            entity[aggregate.keyword] = aggregate.values(instances)
    return entity


def find_response(query: Query, entity: Record) -> Dataset:
    """The identifier of one C-FIND match: the level, then each requested key with the entity's value."""
    response = Dataset()
    charset = entity.get(SPECIFIC_CHARACTER_SET, ())
    if charset:
        response.SpecificCharacterSet = list(charset) if len(charset) > 1 else charset[0]
    response.QueryRetrieveLevel = query.level.value
    for key in query.return_keys:
        values = entity.get(key.keyword, ()) if key.keyword else ()
        response.add_new(key.tag, key.vr, _element_value(key.vr, values))
    return response


def _element_value(vr: str, values: Values) -> object:
    if vr == "SQ":
        return []
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)
