"""Factor secrets: answer normalization and scrypt hashing, AES-GCM sealing, codes, TOTP, masks."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import unicodedata
from dataclasses import dataclass, field

import phonenumbers
from cryptography.exceptions import InvalidKey, InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from guard.keyring import Keyring

FACTOR_KEY_PURPOSE = "identity_factors"
CODE_KEY_PURPOSE = "identity_codes"
_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,63}$")


def normalize_answer(answer: str) -> str:
    """Case, accents, punctuation-free spacing: 'José  Smith ' == 'jose smith'."""
    decomposed = unicodedata.normalize("NFKD", answer)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


@dataclass(frozen=True)
class ScryptHasher:
    """Slow salted hash of knowledge answers; cost is stored in each hash so it can rise later."""

    # OWASP Password Storage Cheat Sheet: scrypt N=2**15, r=8, p=3 (32 MiB) is one of its
    # equivalent minimum settings. Tests lower the cost through IdentityRuntime, never prod.
    log2_n: int = 15
    r: int = 8
    p: int = 3
    _dummy: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Made now, not on first use: the first unknown customer must not cost an extra hash.
        self._dummy["h"] = self.hash(secrets.token_hex(16))

    def hash(self, answer: str) -> str:
        """scrypt$log2n$r$p$salt$digest (base64), over the normalized answer."""
        salt = secrets.token_bytes(16)
        digest = self._kdf(salt, self.log2_n, self.r, self.p).derive(normalize_answer(answer).encode())
        return "$".join(["scrypt", str(self.log2_n), str(self.r), str(self.p),
                         base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])

    def verify(self, answer: str, stored: str | None) -> bool:
        """Constant-time check; with no stored hash, checks against a dummy so the work is equal."""
        target = stored if stored is not None else self.dummy_hash()
        try:
            _, log2_n, r, p, salt, digest = target.split("$")
            kdf = self._kdf(base64.b64decode(salt), int(log2_n), int(r), int(p))
            kdf.verify(normalize_answer(answer).encode(), base64.b64decode(digest))
        except (InvalidKey, ValueError, binascii.Error):
            return False
        return stored is not None

    def dummy_hash(self) -> str:
        """A hash of a random answer at the current cost (what unknown customers are checked against)."""
        return self._dummy["h"]

    @staticmethod
    def _kdf(salt: bytes, log2_n: int, r: int, p: int) -> Scrypt:
        return Scrypt(salt=salt, length=32, n=2 ** log2_n, r=r, p=p)


# ----------------------------------------------------------------------------- sealing


@dataclass(frozen=True)
class Sealed:
    """An AES-GCM ciphertext and the key version that sealed it."""

    key_version: int
    nonce: bytes
    ciphertext: bytes


def _aad(tenant_id: str, customer_ref: str, kind: str) -> bytes:
    # Binding tenant, customer and kind means a ciphertext copied to another row fails to open.
    return f"guard-identity\x00{tenant_id}\x00{customer_ref}\x00{kind}".encode()


def seal(keyring: Keyring, plaintext: str, *, tenant_id: str, customer_ref: str, kind: str) -> Sealed:
    """Encrypt a factor secret under the current identity key, bound to its owner."""
    kv = keyring.current(FACTOR_KEY_PURPOSE)
    nonce = secrets.token_bytes(12)
    ct = AESGCM(kv.material).encrypt(nonce, plaintext.encode(), _aad(tenant_id, customer_ref, kind))
    return Sealed(kv.version, nonce, ct)


def unseal(keyring: Keyring, sealed: Sealed, *, tenant_id: str, customer_ref: str, kind: str) -> str:
    """Decrypt a factor secret; InvalidTag if it was moved or altered."""
    kv = keyring.get(FACTOR_KEY_PURPOSE, sealed.key_version)
    return AESGCM(kv.material).decrypt(sealed.nonce, sealed.ciphertext,
                                       _aad(tenant_id, customer_ref, kind)).decode()


__all__ = ["InvalidTag"]


# ----------------------------------------------------------------------------- contacts


def normalize_phone(value: str) -> str | None:
    """E.164 form of a valid phone number, or None."""
    try:
        num = phonenumbers.parse(value, "US")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(num):
        return None
    return str(phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164))


def normalize_email(value: str) -> str | None:
    """Lower-cased email address if it looks like one, else None."""
    value = value.strip()
    return value.lower() if _EMAIL_RE.match(value) else None


def mask_phone(e164: str) -> str:
    """'+14155550123' -> '+1******23'."""
    return e164[:2] + "*" * max(0, len(e164) - 4) + e164[-2:]


def mask_email(email: str) -> str:
    """'alice@example.com' -> 'a***@example.com'."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def fingerprint(index_key: bytes, tenant_id: str, kind: str, value: str) -> str:
    """Keyed hash of a normalized contact: equal contacts compare equal without being stored."""
    return hmac.new(index_key, f"{tenant_id}\x00{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()


# ----------------------------------------------------------------------------- one-time codes


def new_code(digits: int) -> str:
    """A uniformly random numeric code from the OS CSPRNG."""
    return str(secrets.randbelow(10 ** digits)).zfill(digits)


def code_hash(key: bytes, verification_id: str, code: str) -> str:
    """Keyed hash of a code bound to its verification (a leaked row cannot be brute-forced offline)."""
    return hmac.new(key, f"{verification_id}\x00{code}".encode(), hashlib.sha256).hexdigest()


def codes_equal(a: str, b: str) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(a.encode(), b.encode())


# ----------------------------------------------------------------------------- TOTP


def parse_totp_secret(value: str) -> bytes | None:
    """Decode a base32 TOTP secret of at least 128 bits (RFC 4226 s.4 recommends 160)."""
    cleaned = value.replace(" ", "").upper()
    try:
        raw = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError):
        return None
    return raw if 16 <= len(raw) <= 64 else None


def totp_match(secret: bytes, code: str, *, at: float, step: int, drift: int, digits: int = 6) -> int | None:
    """The time step (counter) whose code equals `code` within +-drift steps, else None."""
    # SHA-1 is what RFC 6238 authenticator apps use; HMAC-SHA-1 remains sound for this.
    totp = TOTP(secret, digits, SHA1(), step, enforce_key_length=False)  # noqa: S303
    current = int(at) // step
    found: int | None = None
    for counter in range(current - drift, current + drift + 1):
        # Check every candidate step (no early exit) so timing does not reveal which matched.
        candidate = totp.generate(counter * step).decode()
        if codes_equal(candidate, code) and found is None:
            found = counter
    return found


def totp_code(secret: bytes, *, at: float, step: int = 30, digits: int = 6) -> str:
    """The code for time `at` (tests and enrollment self-checks)."""
    return TOTP(secret, digits, SHA1(), step, enforce_key_length=False).generate(int(at)).decode()  # noqa: S303
