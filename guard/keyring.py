"""Local keyring file: versioned secret keys per purpose, created 0600 on first run.

The vault issue plugs KEK providers (KMS, Vault transit) in front of this; the foundation
uses it for the API-key hash pepper and the subject-pseudonym index key.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from guard.errors import ConfigError

# Purposes the foundation needs at start-up; other purposes are created on first use.
FOUNDATION_PURPOSES = ("api_key_pepper", "subject_index")


@dataclass(frozen=True)
class KeyVersion:
    """One version of a keyed secret."""

    purpose: str
    version: int
    material: bytes


class Keyring:
    """Versioned secrets held in a JSON file readable only by its owner."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, list[KeyVersion]] = {}
        self._load_or_create()

    def current(self, purpose: str) -> KeyVersion:
        """The newest version of the secret for `purpose` (created if missing)."""
        if purpose not in self._keys:
            self._reload()  # another process may have created it since this one loaded
        if purpose not in self._keys:
            self.rotate(purpose)
        return self._keys[purpose][-1]

    def get(self, purpose: str, version: int) -> KeyVersion:
        """A specific version of a secret; ConfigError if the keyring lacks it."""
        for kv in self._keys.get(purpose, []):
            if kv.version == version:
                return kv
        raise ConfigError(f"keyring {self.path} has no version {version} of {purpose!r}")

    def versions(self, purpose: str) -> list[KeyVersion]:
        """Every version held for `purpose`, oldest first."""
        return list(self._keys.get(purpose, []))

    def rotate(self, purpose: str) -> KeyVersion:
        """Add a new random 256-bit version of `purpose` and persist the keyring."""
        with self._file_lock():
            # Another process may have added versions since this one loaded the file: never
            # write back a stale copy (that would destroy their keys).
            self._reload()
            versions = self._keys.setdefault(purpose, [])
            kv = KeyVersion(purpose, (versions[-1].version + 1) if versions else 1,
                            secrets.token_bytes(32))
            versions.append(kv)
            self._save()
        return kv

    def retire(self, purpose: str, version: int) -> None:
        """Remove a version nothing uses any more (never the newest) and persist the keyring."""
        with self._file_lock():
            self._reload()
            versions = self._keys.get(purpose, [])
            if versions and versions[-1].version == version:
                raise ValueError(f"the newest version of {purpose!r} cannot be retired")
            self._keys[purpose] = [kv for kv in versions if kv.version != version]
            self._save()

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _reload(self) -> None:
        if self.path.exists():
            raw = json.loads(self.path.read_text())
            self._keys = {
                purpose: [KeyVersion(purpose, int(v["version"]), base64.b64decode(v["material"]))
                          for v in versions]
                for purpose, versions in raw["keys"].items()
            }

    def _load_or_create(self) -> None:
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            data = {p: [KeyVersion(p, 1, secrets.token_bytes(32))] for p in FOUNDATION_PURPOSES}
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process created it first: read theirs
            else:
                with os.fdopen(fd, "w") as fh:
                    json.dump(_serialize(data), fh)
                    fh.flush()
                    os.fsync(fh.fileno())
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"GUARD_KEYRING_PATH: {self.path} is readable by others (mode {oct(mode)}); "
                "chmod 600 it"
            )
        try:
            raw = json.loads(self.path.read_text())
            self._keys = {
                purpose: [
                    KeyVersion(purpose, int(v["version"]), base64.b64decode(v["material"]))
                    for v in versions
                ]
                for purpose, versions in raw["keys"].items()
            }
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"GUARD_KEYRING_PATH: {self.path} is not a valid keyring") from exc
        for purpose in FOUNDATION_PURPOSES:
            if purpose not in self._keys:
                self.rotate(purpose)

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(_serialize(self._keys), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


def _serialize(keys: dict[str, list[KeyVersion]]) -> dict[str, object]:
    return {
        "format": 1,
        "written_at": datetime.now(UTC).isoformat(),
        "keys": {
            p: [{"version": k.version, "material": base64.b64encode(k.material).decode()} for k in v]
            for p, v in keys.items()
        },
    }
