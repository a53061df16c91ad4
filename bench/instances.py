"""The instances the C-STORE benchmark sends: generated once with pydicom into a cache, then reused.

Three kinds, made by the storage tests' generators (tests/interop/store_data.py) so that
the benchmark and the tests send the same data: a small CT (~10 KB), a typical MR
(~0.5 MB) and a multi-frame secondary capture (~55 MB). Every file has its own SOP
Instance UID and is written in Explicit VR Little Endian, the syntax every peer
proposes and accepts without conversion. Files are named by their index
(`<kind>/00042.dcm`); a run of N instances sends the first N, so the quick and the
full benchmark share one cache. A file is written under a temporary name and renamed,
so an interrupted generation never leaves a half-written instance behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian

from tests.interop.store_data import GENERATORS, LARGE, SMALL, TYPICAL, write_instance

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
INSTANCES = "instances-v1"  # bump when the generated files change
KINDS = (SMALL, TYPICAL, LARGE)
SUFFIX = ".dcm"
PARTIAL = ".writing"


@dataclass(frozen=True)
class InstanceSet:
    """`count` instances of one kind, ready to send."""

    kind: str
    files: tuple[Path, ...]
    total_bytes: int

    @property
    def count(self) -> int:
        return len(self.files)

    def quarters(self, parts: int) -> list[tuple[Path, ...]]:
        """The files dealt into `parts` near-equal slices, one per parallel sender."""
        return [self.files[index::parts] for index in range(parts)]


def _path(folder: Path, index: int) -> Path:
    return folder / f"{index:05d}{SUFFIX}"


def _generate(kind: str, path: Path, index: int) -> None:
    partial = path.with_suffix(PARTIAL)
    write_instance(GENERATORS[kind](seed=index + 1), ExplicitVRLittleEndian, partial, kind)
    partial.rename(path)


def instance_set(kind: str, count: int, cache: Path = CACHE) -> InstanceSet:
    """The first `count` cached instances of `kind`, generating the ones missing."""
    folder = cache / INSTANCES / kind
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index in range(count):
        path = _path(folder, index)
        if not path.exists():
            _generate(kind, path, index)
        files.append(path)
    return InstanceSet(kind, tuple(files), sum(path.stat().st_size for path in files))
