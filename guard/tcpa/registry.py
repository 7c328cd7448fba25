"""DNC registries: compact per-area-code blocks in the database, a per-process index over them.

The database is the source of truth: an import writes one block per area code (a sorted uint32
array of the 7-digit local numbers, or a 10,000,000-bit bitmap when that is smaller) and flips
the list's active version in the same transaction, so every host sees one version and a failed
import changes nothing. Each process decodes blocks lazily (numpy views over the bytes) and
keys them by version id, so a newly committed version is picked up at the next check.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from guard.clock import Clock
from guard.ids import new_id
from guard.tcpa.models import InternalDnc, RegistryBlock, RegistryVersion

LOCAL_SPACE = 10_000_000
BITMAP_BYTES = LOCAL_SPACE // 8
_LIST_RE = re.compile(r"^(national|litigator|internal|state:[A-Z]{2})$")
_SEPARATORS = re.compile(r"[\s().-]")
U32 = npt.NDArray[np.uint32]


class ImportRejected(ValueError):
    """The file has bad lines; nothing was applied."""

    def __init__(self, errors: list[tuple[int, str]], total_errors: int) -> None:
        super().__init__(f"{total_errors} bad line(s)")
        self.errors = errors
        self.total_errors = total_errors


def valid_list_name(name: str) -> bool:
    """national, litigator, internal or state:XX."""
    return bool(_LIST_RE.match(name))


# ----------------------------------------------------------------------------- blocks


def sorted_unique(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Sorted distinct values (numpy 2's np.unique hashes, which is far slower on large arrays)."""
    if a.size == 0:
        return a
    s = np.sort(a, kind="stable" if a.size < 1024 else "quicksort")
    keep = np.empty(s.size, dtype=np.bool_)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def encode_block(locals_: U32, *, unique_sorted: bool = False) -> tuple[str, bytes, int]:
    """(fmt, bytes, count) of one area code's local numbers: whichever form is smaller."""
    uniq = locals_.astype(np.uint32) if unique_sorted else sorted_unique(locals_.astype(np.uint32))
    if uniq.size * 4 >= BITMAP_BYTES:
        bits = np.zeros(LOCAL_SPACE, dtype=np.bool_)
        bits[uniq] = True
        return "bitmap", np.packbits(bits, bitorder="little").tobytes(), int(uniq.size)
    return "sorted", uniq.astype("<u4").tobytes(), int(uniq.size)


@dataclass(frozen=True)
class Block:
    """A decoded block: membership tests for arrays of local numbers."""

    fmt: str
    data: npt.NDArray[Any]

    @classmethod
    def decode(cls, fmt: str, raw: bytes) -> Block:
        """View the stored bytes without copying."""
        if fmt == "bitmap":
            return cls(fmt, np.frombuffer(raw, dtype=np.uint8))
        if fmt == "sorted":
            return cls(fmt, np.frombuffer(raw, dtype="<u4"))
        raise ValueError(f"unknown block format {fmt!r}")

    def contains(self, locals_: U32) -> npt.NDArray[np.bool_]:
        """Vectorized membership of local numbers (0 <= n < 10,000,000)."""
        if self.fmt == "bitmap":
            byte: npt.NDArray[np.uint8] = self.data[locals_ >> 3]
            bits: npt.NDArray[np.bool_] = ((byte >> (locals_ & 7).astype(np.uint8)) & 1).astype(np.bool_)
            return bits
        if self.data.size == 0:
            return np.zeros(locals_.shape, dtype=np.bool_)
        pos = np.searchsorted(self.data, locals_)
        pos = np.minimum(pos, self.data.size - 1)
        found: npt.NDArray[np.bool_] = np.asarray(self.data[pos] == locals_, dtype=np.bool_)
        return found

    def to_array(self) -> U32:
        """All local numbers in the block, sorted."""
        if self.fmt == "bitmap":
            bits = np.unpackbits(self.data, bitorder="little")
            return np.flatnonzero(bits).astype(np.uint32)
        return np.asarray(self.data, dtype=np.uint32)


class RegistryIndex:
    """This host's view of registry blocks, keyed by (version, area code); versions never change.

    With a directory, each block is materialized once per host as a file and memory-mapped, so
    every gunicorn worker on the host shares one copy through the page cache; a new version has
    new files, so a committed import is picked up atomically at the next check.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = root
        self._blocks: dict[tuple[str, int], Block | None] = {}
        self._lock = threading.Lock()

    def block(self, session: Session, version_id: str, area_code: int) -> Block | None:
        """The block of one area code in a version (None: no numbers there)."""
        key = (version_id, area_code)
        with self._lock:
            if key in self._blocks:
                return self._blocks[key]
        blk = self._from_file(version_id, area_code)
        if blk is None:
            row = session.execute(select(RegistryBlock.fmt, RegistryBlock.data).where(
                RegistryBlock.version_id == version_id, RegistryBlock.area_code == area_code)).first()
            if row is not None:
                raw = bytes(row[1])
                blk = self._to_file(version_id, area_code, row[0], raw) or Block.decode(row[0], raw)
        with self._lock:
            self._blocks[key] = blk
        return blk

    def _path(self, version_id: str, area_code: int, fmt: str) -> Path | None:
        if self.root is None or not re.fullmatch(r"[A-Za-z0-9_]{1,40}", version_id):
            return None
        return self.root / version_id / f"{area_code:03d}.{fmt}"

    def _from_file(self, version_id: str, area_code: int) -> Block | None:
        for fmt in ("bitmap", "sorted"):
            path = self._path(version_id, area_code, fmt)
            if path is not None and path.exists():
                dtype = np.dtype(np.uint8) if fmt == "bitmap" else np.dtype("<u4")
                if path.stat().st_size == 0:
                    return Block(fmt, np.zeros(0, dtype=dtype))
                return Block(fmt, np.memmap(path, dtype=dtype, mode="r"))
        return None

    def _to_file(self, version_id: str, area_code: int, fmt: str, raw: bytes) -> Block | None:
        path = self._path(version_id, area_code, fmt)
        if path is None:
            return None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(raw)
            os.replace(tmp, path)  # atomic: another worker sees the whole file or none
        except OSError:
            return None  # no writable instance dir: keep the block in this process's memory
        return self._from_file(version_id, area_code)

    def contains(self, session: Session, version_id: str, area_code: int, local: int) -> bool:
        """Whether one number is in a version."""
        blk = self.block(session, version_id, area_code)
        if blk is None:
            return False
        return bool(blk.contains(np.array([local], dtype=np.uint32))[0])

    def forget(self, keep: Iterable[str]) -> None:
        """Drop blocks (and files) of versions not in `keep` (superseded versions)."""
        live = set(keep)
        with self._lock:
            for key in [k for k in self._blocks if k[0] not in live]:
                del self._blocks[key]
        if self.root is not None and self.root.is_dir():
            for d in self.root.iterdir():
                if d.is_dir() and d.name not in live:
                    shutil.rmtree(d, ignore_errors=True)


def index_for(rt: Any) -> RegistryIndex:
    """The process's registry index (files under the instance dir), kept in the runtime's extras."""
    idx = rt.extras.get("tcpa_registry_index")
    if idx is None:
        idx = rt.extras.setdefault("tcpa_registry_index",
                                   RegistryIndex(Path(rt.settings.instance_dir) / "dnc"))
    assert isinstance(idx, RegistryIndex)
    return idx


def active_versions(session: Session, tenant_id: str) -> dict[str, RegistryVersion]:
    """The active operator-wide lists plus the tenant's own (litigator), by list name."""
    rows = session.execute(select(RegistryVersion).where(
        RegistryVersion.status == "active",
        (RegistryVersion.tenant_id.is_(None)) | (RegistryVersion.tenant_id == tenant_id),
    )).scalars().all()
    return {r.list_name: r for r in rows}


# ----------------------------------------------------------------------------- import


def _parse_number(text: str) -> tuple[int, int] | None:
    digits = _SEPARATORS.sub("", text)
    if digits.startswith("+1"):
        digits = digits[2:]
    elif len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    if len(digits) != 10 or not digits.isdigit() or digits[0] in "01" or digits[3] in "01":
        return None
    return int(digits[:3]), int(digits[3:])


def parse_line(line: str, *, changes: bool) -> tuple[int, int, bool] | None:
    """(area code, local number, is_addition) of one line, or None if it is junk."""
    parts = [p.strip() for p in line.split(",")]
    add = True
    if changes and len(parts) >= 2 and parts[-1].upper() in ("A", "D", "ADD", "DELETE"):
        add = parts[-1].upper() in ("A", "ADD")
        parts = parts[:-1]
    if len(parts) == 2:
        parsed = _parse_number(parts[0] + parts[1]) if len(parts[0]) == 3 else None
    elif len(parts) == 1:
        parsed = _parse_number(parts[0])
    else:
        parsed = None
    if parsed is None:
        return None
    return parsed[0], parsed[1], add


@dataclass
class ParsedFile:
    """Additions and deletions per area code, as uint32 arrays."""

    adds: dict[int, U32]
    deletes: dict[int, U32]
    lines: int


_CHUNK_BYTES = 64 * 1024 * 1024
_BITMAP_BUILD_MIN = 20_000_000  # above this many numbers, group through one flat bitmap
_AREA_BASE = 200


def _fast_chunk(buf: bytes) -> npt.NDArray[np.int64] | None:
    """10-digit national numbers of a chunk of `NNNNNNNNNN\\n` lines, or None if any line differs."""
    if len(buf) % 11:
        return None
    grid = np.frombuffer(buf, dtype=np.uint8).reshape(-1, 11)
    if not (grid[:, 10] == 10).all():
        return None
    digits = grid[:, :10] - np.uint8(48)  # a non-digit wraps past 9
    if (digits > 9).any() or (digits[:, 0] < 2).any() or (digits[:, 3] < 2).any():
        return None
    hi = digits[:, 0].astype(np.uint32)
    lo = digits[:, 5].astype(np.uint32)
    for k in range(1, 5):  # two 5-digit halves in uint32: a few passes over narrow columns
        hi = hi * np.uint32(10) + digits[:, k]
        lo = lo * np.uint32(10) + digits[:, 5 + k]
    values: npt.NDArray[np.int64] = hi.astype(np.int64) * 100_000 + lo
    return values


def _group(values: list[npt.NDArray[np.int64]]) -> dict[int, U32]:
    """Unique sorted local numbers per area code."""
    total = sum(v.size for v in values)
    out: dict[int, U32] = {}
    if total == 0:
        return out
    if total < _BITMAP_BUILD_MIN:
        allv = sorted_unique(np.concatenate(values))
        areas = allv // LOCAL_SPACE
        bounds = np.flatnonzero(np.diff(areas)) + 1
        for part in np.split(allv, bounds):
            out[int(part[0] // LOCAL_SPACE)] = (part % LOCAL_SPACE).astype(np.uint32)
        return out
    # One flat byte per possible number (calloc'd lazily: only used area codes touch memory).
    flat = np.zeros((1000 - _AREA_BASE) * LOCAL_SPACE, dtype=np.bool_)
    used = np.zeros(1000, dtype=np.int64)
    for v in values:
        flat[v - _AREA_BASE * LOCAL_SPACE] = True
        used += np.bincount(v // LOCAL_SPACE, minlength=1000)
    for area in np.flatnonzero(used).tolist():
        seg = flat[(area - _AREA_BASE) * LOCAL_SPACE:(area - _AREA_BASE + 1) * LOCAL_SPACE]
        out[area] = np.flatnonzero(seg).astype(np.uint32)
    return out


def parse_file(path: Path, *, changes: bool, progress: Callable[[int], None] | None = None,
               max_errors: int = 50) -> ParsedFile:
    """Read a registry file; ImportRejected (with line numbers) if any line is junk.

    Chunks made only of `NNNNNNNNNN` lines (the national registry's download) are parsed with
    numpy; any other chunk goes line by line, which also names the bad lines.
    """
    adds: list[npt.NDArray[np.int64]] = []
    deletes: list[npt.NDArray[np.int64]] = []
    errors: list[tuple[int, str]] = []
    total_errors = 0
    line_no = 0
    rest = b""
    with path.open("rb") as fh:
        while True:
            block = fh.read(_CHUNK_BYTES)
            if not block and not rest:
                break
            buf = rest + block
            if block:
                cut = buf.rfind(b"\n") + 1
                buf, rest = buf[:cut], buf[cut:]
            else:
                rest = b""
                if not buf.endswith(b"\n"):
                    buf += b"\n"
            if progress is not None:
                progress(len(block))
            if not buf:
                continue
            fast = None if changes else _fast_chunk(buf)
            if fast is not None:
                adds.append(fast)
                line_no += fast.size
                continue
            chunk_adds: list[int] = []
            chunk_dels: list[int] = []
            for raw in buf.split(b"\n")[:-1]:
                line_no += 1
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                parsed = parse_line(line, changes=changes)
                if parsed is None:
                    total_errors += 1
                    if len(errors) < max_errors:
                        errors.append((line_no, "not a 10-digit US number" + (" change" if changes else "")))
                    continue
                area, local, add = parsed
                (chunk_adds if add else chunk_dels).append(area * LOCAL_SPACE + local)
            adds.append(np.array(chunk_adds, dtype=np.int64))
            deletes.append(np.array(chunk_dels, dtype=np.int64))
    if total_errors:
        raise ImportRejected(errors, total_errors)
    return ParsedFile(adds=_group(adds), deletes=_group(deletes), lines=line_no)


def import_registry(session: Session, *, list_name: str, parsed: ParsedFile, changes: bool,
                    tenant_id: str | None, file_date: datetime, clock: Clock) -> RegistryVersion:
    """Write a new version of a list and make it active, all in the caller's transaction."""
    current = session.execute(select(RegistryVersion).where(
        RegistryVersion.list_name == list_name, RegistryVersion.status == "active",
        (RegistryVersion.tenant_id == tenant_id) if tenant_id else RegistryVersion.tenant_id.is_(None),
    ).with_for_update()).scalars().first()
    if changes and current is None:
        raise ValueError(f"{list_name}: a change file needs a full version to apply to")
    version = RegistryVersion(
        id=new_id("rv"), list_name=list_name, tenant_id=tenant_id, status="loading",
        mode="changes" if changes else "full", file_date=file_date, imported_at=clock.now(),
        count=0, base_version=current.id if changes and current else None)
    session.add(version)
    session.flush()
    area_codes = set(parsed.adds) | set(parsed.deletes)
    total = 0
    if changes and current is not None:
        base_rows = session.execute(select(RegistryBlock).where(
            RegistryBlock.version_id == current.id)).scalars().all()
        for row in base_rows:
            if row.area_code in area_codes:
                continue
            session.add(RegistryBlock(version_id=version.id, area_code=row.area_code, fmt=row.fmt,
                                      count=row.count, data=row.data))
            total += row.count
        base = {r.area_code: r for r in base_rows}
    else:
        base = {}
    for area in sorted(area_codes):
        arr = parsed.adds.get(area, np.zeros(0, dtype=np.uint32))
        merged = area in base
        if merged:
            arr = np.concatenate([Block.decode(base[area].fmt, bytes(base[area].data)).to_array(), arr])
        if area in parsed.deletes:
            arr = arr[~np.isin(arr, parsed.deletes[area])]
        if arr.size == 0:
            continue
        fmt, data, count = encode_block(arr, unique_sorted=not merged)
        session.add(RegistryBlock(version_id=version.id, area_code=area, fmt=fmt, count=count,
                                  data=data))
        total += count
        session.flush()
    if current is not None:
        session.execute(update(RegistryVersion).where(RegistryVersion.id == current.id)
                        .values(status="superseded"))
    version.count = total
    version.status = "active"
    version.activated_at = clock.now()
    session.flush()
    return version


def import_internal(session: Session, *, tenant_id: str, parsed: ParsedFile, clock: Clock) -> int:
    """Add (and, in a change file, remove) numbers on a tenant's internal list."""
    from guard.db import insert_ignore

    n = 0
    for area, arr in parsed.adds.items():
        for local in arr.tolist():
            insert_ignore(session, InternalDnc, tenant_id=tenant_id, phone=f"+1{area}{local:07d}",
                          source="import", added_at=clock.now())
            n += 1
    for area, arr in parsed.deletes.items():
        for local in arr.tolist():
            row = session.get(InternalDnc, (tenant_id, f"+1{area}{local:07d}"))
            if row is not None:
                session.delete(row)
    session.flush()
    return n
