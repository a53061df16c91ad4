"""Dry runs (`router test`): what the rules would do with instance files, sending nothing.

For each Part 10 file (directories are walked), `dry_run` reads the header,
takes the association facts from the command line (the calling AE title
defaults to the file's Source Application Entity Title, the called one to the
router's), traces the rules and tries each forward's morphs on a copy of the
header, so a morph that would fail at delivery shows here. `as_text` and
`as_json` present the result for people and for machines.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import Dataset

from rules.decision import Decision, Forward, Morph, MorphKind, Prefetch
from rules.evaluate import InstanceFacts, RuleOutcome, RuleSet, read_header
from rules.morph import MorphError, apply_morphs


@dataclass(frozen=True)
class Association:
    """The association facts a dry run pretends the instances came on ('' for calling_ae: the file's)."""

    calling_ae: str = ""
    called_ae: str = ""
    peer_ip: str = ""


@dataclass(frozen=True)
class DryRun:
    """The rules' verdict on one file; `error` if it could not be read, `morph_errors` per failing forward."""

    path: Path
    facts: InstanceFacts | None = None
    decision: Decision = Decision()
    outcomes: tuple[RuleOutcome, ...] = ()
    morph_errors: tuple[tuple[Forward, str], ...] = ()
    error: str = ""


def instance_files(paths: Iterable[Path]) -> Iterator[Path]:
    """The files named, and every file under the directories named, in a stable order."""
    for path in paths:
        if path.is_dir():
            yield from sorted(child for child in path.rglob("*") if child.is_file())
        else:
            yield path


def dry_run(rules: RuleSet, path: Path, association: Association) -> DryRun:
    try:
        header = read_header(path)
    except Exception as error:  # noqa: BLE001 - pydicom raises many types for a file that is not DICOM
        reason = str(error).split(" Use force=True")[0]  # pydicom's hint is for its own callers
        return DryRun(path, error=f"cannot read it as DICOM: {reason}")
    facts = facts_of(header, association)
    decision, outcomes = rules.trace(facts)
    return DryRun(path, facts, decision, outcomes, tuple(_morph_errors(header, decision.forwards)))


def facts_of(header: Dataset, association: Association) -> InstanceFacts:
    meta = getattr(header, "file_meta", None) or Dataset()
    return InstanceFacts(
        sop_class_uid=str(meta.get("MediaStorageSOPClassUID", header.get("SOPClassUID", ""))),
        sop_instance_uid=str(meta.get("MediaStorageSOPInstanceUID", header.get("SOPInstanceUID", ""))),
        transfer_syntax=str(meta.get("TransferSyntaxUID", "")),
        calling_ae=association.calling_ae or str(meta.get("SourceApplicationEntityTitle", "")).strip(),
        called_ae=association.called_ae,
        peer_address=association.peer_ip,
        header=header,
    )


def _morph_errors(header: Dataset, forwards: Iterable[Forward]) -> Iterator[tuple[Forward, str]]:
    for forward in forwards:
        if forward.morphs:
            try:
                apply_morphs(copy.deepcopy(header), forward.morphs)
            except MorphError as error:
                yield forward, str(error)


# ---- presenting -----------------------------------------------------------------------------------------
def as_text(run: DryRun) -> str:
    if run.facts is None:
        return f"{run.path}: {run.error}"
    facts = run.facts
    lines = [f"{run.path}: {facts.sop_class_uid} from '{facts.calling_ae}' to '{facts.called_ae}'"]
    lines.extend(f"  {outcome}" for outcome in run.outcomes)
    lines.extend(f"  -> forward to {forward.destination}{_morphs_text(forward.morphs)} (rule '{forward.rule}')"
                 for forward in run.decision.forwards)
    lines.extend(f"  -> prefetch {_prefetch_text(prefetch)} (rule '{prefetch.rule}')"
                 for prefetch in run.decision.prefetches)
    lines.extend(f"  !! morphs for {forward.destination} would fail: {error}" for forward, error in run.morph_errors)
    if not run.decision.forwards:
        lines.append("  -> dropped" if run.decision.dropped else "  -> not forwarded: no rule sends it anywhere")
    return "\n".join(lines)


def _morphs_text(morphs: tuple[Morph, ...]) -> str:
    return f" with {', '.join(map(morph_text, morphs))}" if morphs else ""


def morph_text(morph: Morph) -> str:
    if morph.kind is MorphKind.SET:
        return f"set {morph.tag} = '{morph.value}'"
    if morph.kind is MorphKind.DELETE:
        return f"delete {morph.tag}"
    if morph.kind is MorphKind.COPY:
        return f"copy {morph.source} to {morph.tag}"
    return f"replace /{morph.pattern}/ in {morph.tag} with '{morph.value}'"


def _prefetch_text(prefetch: Prefetch) -> str:
    match = ", ".join(f"{key}='{value}'" for key, value in prefetch.match)
    once = f", once per {prefetch.once_key}" if prefetch.once_key else ""
    return f"from {prefetch.source} to {prefetch.move_destination}: {prefetch.studies} studies where {match}{once}"


def as_json(run: DryRun) -> dict[str, Any]:
    if run.facts is None:
        return {"file": str(run.path), "error": run.error}
    facts = run.facts
    decision = run.decision.to_dict()
    decision.pop("explanation")
    return {
        "file": str(run.path),
        "facts": {"sop_class": facts.sop_class_uid, "sop_instance": facts.sop_instance_uid,
                  "transfer_syntax": facts.transfer_syntax, "calling_ae": facts.calling_ae,
                  "called_ae": facts.called_ae, "peer_ip": facts.peer_address},
        "rules": [{"rule": o.rule, "outcome": o.outcome.value, "reasons": list(o.reasons)} for o in run.outcomes],
        "decision": decision,
        "destinations": list(run.decision.destinations),
        "morph_errors": [{"destination": forward.destination, "rule": forward.rule, "error": error}
                         for forward, error in run.morph_errors],
    }
