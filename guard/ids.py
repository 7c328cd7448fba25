"""Opaque, prefixed, random identifiers (tok_, ch_, evt_, key_, ...)."""

from __future__ import annotations

import secrets

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def random_string(length: int) -> str:
    """A base-62 string from the OS CSPRNG (length 22 carries > 128 bits).

    One read of `length` random bytes (8 bits per character drawn, 5.95 used) converted to
    base 62: a single syscall instead of one `secrets.choice` per character; the modulo bias
    is below 2**-60.
    """
    n = int.from_bytes(secrets.token_bytes(length), "big")
    out = []
    for _ in range(length):
        n, r = divmod(n, 62)
        out.append(_ALPHABET[r])
    return "".join(out)


def new_id(prefix: str, length: int = 22) -> str:
    """A new identifier such as `evt_3ZbK...`: the prefix names the kind, the rest is random."""
    return f"{prefix}_{random_string(length)}"
