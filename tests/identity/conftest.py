"""Identity fixtures (the helpers live in identity_support)."""

from __future__ import annotations

from tests.identity.identity_support import api, ident, store

__all__ = ["api", "ident", "store"]
