"""Opaque, prefixed, random identifiers (tok_, ch_, evt_, key_, ...)."""

from __future__ import annotations

import secrets

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def random_string(length: int) -> str:
    """A base-62 string from the OS CSPRNG (length 22 carries > 128 bits)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_id(prefix: str, length: int = 22) -> str:
    """A new identifier such as `evt_3ZbK...`: the prefix names the kind, the rest is random."""
    return f"{prefix}_{random_string(length)}"
