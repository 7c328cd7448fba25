"""Key providers: key-encryption keys (KEKs) that wrap the vault's data-encryption keys (DEKs).

The vault never sees KEK material through this interface: it hands a DEK to `wrap` and gets
an opaque blob back, as a KMS `Encrypt` or a Vault transit `encrypt` call would. To add a KMS
or Vault-transit provider, implement `KeyProvider` (wrap/unwrap with the associated data as
the encryption context, `rotate` creating a new key version, `retire` disabling one) and
return it from `provider_for`; nothing else changes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from guard.errors import ConfigError
from guard.keyring import Keyring

KEK_PURPOSE = "vault_kek"
FINGERPRINT_PURPOSE = "vault_fingerprint"
CVC_PURPOSE = "vault_cvc"
NONCE_BYTES = 12


class UnwrapFailed(Exception):
    """A wrapped key or a ciphertext failed authentication (wrong key, data or binding)."""


@dataclass(frozen=True)
class Wrapped:
    """A DEK wrapped under one KEK version of one provider."""

    provider: str
    kek_version: int
    blob: bytes


class KeyProvider(Protocol):
    """Where KEKs live. Implementations: the local keyring file; a KMS or Vault transit."""

    name: str

    def current_version(self) -> int:
        """The KEK version new wraps use."""
        ...

    def wrap(self, dek: bytes, *, aad: bytes) -> Wrapped:
        """Encrypt a DEK under the current KEK, bound to `aad`."""
        ...

    def unwrap(self, wrapped: Wrapped, *, aad: bytes) -> bytes:
        """Decrypt a DEK; UnwrapFailed if the blob, version or `aad` do not match."""
        ...

    def rotate(self) -> int:
        """Create a new KEK version (used by the next wrap) and return it."""
        ...

    def versions(self) -> list[int]:
        """KEK versions the provider still holds."""
        ...

    def retire(self, version: int) -> None:
        """Destroy (or disable) a KEK version nothing uses any more; never the current one."""
        ...


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM: random 96-bit nonce || ciphertext+tag."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """Inverse of `seal`; UnwrapFailed on any mismatch."""
    if len(blob) < NONCE_BYTES + 16:
        raise UnwrapFailed("ciphertext too short")
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag:
        raise UnwrapFailed("authentication failed") from None


class LocalKeyProvider:
    """KEKs as versioned secrets of the local keyring file (mode 0600).

    Another process (`guard vault rotate-kek`) may add or retire versions while this one
    serves, so the file is re-read whenever it changed on disk before a wrap or unwrap.
    """

    name = "local"

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._lock = threading.Lock()
        self._mtime = self._stat()
        if not keyring.versions(KEK_PURPOSE):
            keyring.current(KEK_PURPOSE)
            self._mtime = self._stat()

    def _stat(self) -> int:
        try:
            return self._keyring.path.stat().st_mtime_ns
        except OSError as exc:
            raise ConfigError(f"keyring {self._keyring.path} is unreadable: {exc}") from exc

    def _fresh(self) -> Keyring:
        with self._lock:
            mtime = self._stat()
            if mtime != self._mtime:
                self._keyring = Keyring(self._keyring.path)
                self._mtime = mtime
            return self._keyring

    def current_version(self) -> int:
        """The newest KEK version in the keyring."""
        return self._fresh().current(KEK_PURPOSE).version

    def wrap(self, dek: bytes, *, aad: bytes) -> Wrapped:
        """Wrap with AES-256-GCM under the newest KEK."""
        kek = self._fresh().current(KEK_PURPOSE)
        return Wrapped(self.name, kek.version, seal(kek.material, dek, b"kek|" + aad))

    def unwrap(self, wrapped: Wrapped, *, aad: bytes) -> bytes:
        """Unwrap with the KEK version the blob names."""
        if wrapped.provider != self.name:
            raise UnwrapFailed(f"DEK was wrapped by provider {wrapped.provider!r}")
        try:
            kek = self._fresh().get(KEK_PURPOSE, wrapped.kek_version)
        except ConfigError:
            raise UnwrapFailed(f"KEK version {wrapped.kek_version} is not in the keyring") from None
        return open_sealed(kek.material, wrapped.blob, b"kek|" + aad)

    def rotate(self) -> int:
        """Add a KEK version to the keyring file."""
        with self._lock:
            # Start from the file, not from this process's copy, so no version is lost.
            self._keyring = Keyring(self._keyring.path)
            kv = self._keyring.rotate(KEK_PURPOSE)
            self._mtime = self._stat()
            return kv.version

    def versions(self) -> list[int]:
        """KEK versions in the keyring."""
        return [kv.version for kv in self._fresh().versions(KEK_PURPOSE)]

    def retire(self, version: int) -> None:
        """Remove a KEK version from the keyring file."""
        with self._lock:
            self._keyring = Keyring(self._keyring.path)
            if version == self._keyring.current(KEK_PURPOSE).version:
                raise ValueError("the current KEK version cannot be retired")
            self._keyring.retire(KEK_PURPOSE, version)
            self._mtime = self._stat()


def provider_for(keyring: Keyring) -> KeyProvider:
    """The configured KEK provider (the local keyring file is the only built-in one)."""
    return LocalKeyProvider(keyring)


def tenant_fingerprint_key(keyring: Keyring, tenant_id: str) -> bytes:
    """A per-tenant HMAC key derived (HKDF) from the keyring's fingerprint secret."""
    master = keyring.current(FINGERPRINT_PURPOSE).material
    return HKDF(algorithm=SHA256(), length=32, salt=b"guard-card-fingerprint",
                info=tenant_id.encode()).derive(master)


def fingerprint(key: bytes, pan: str) -> str:
    """HMAC-SHA256 of the full PAN under the tenant's key, hex (PCI DSS 3.5.1.1)."""
    return hmac.new(key, pan.encode(), hashlib.sha256).hexdigest()
