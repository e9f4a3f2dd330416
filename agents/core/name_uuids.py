"""Name-based UUIDs: version 5 as ``uuid.uuid5`` makes them, in half its time, and a
time-ordered variant of them (version 7's layout).

Two are made for every migrated user (the session id and the outcome's event id), so the
standard library's route through ``UUID(bytes=…, version=5)`` (a bytes round trip and two
checks per call) was a measurable share of the worker's pure work. The value is the same;
``tests/core/test_name_uuids.py`` holds it to ``uuid.uuid5``.

Session ids key three indexes that grow with every migrated user (24 step rows each). Random
keys land all over those B-trees, so each batch dirties pages everywhere; keys that grow with
time land on their right edge. ``time_ordered_name_uuid`` keeps the name's determinism (the same
name and time give the same id) and puts the time first, as RFC 9562's version 7 does.
"""

from __future__ import annotations

import hashlib
from uuid import UUID

# Keep every bit of the SHA-1 prefix but the version nibble and the variant's two bits...
_KEEP = 0xFFFFFFFF_FFFF_0FFF_3FFF_FFFFFFFFFFFF
# ...and set them: version 5, variant RFC 4122 (binary 10).
_SET = 0x00000000_0000_5000_8000_000000000000
# Version 7: 48 bits of Unix milliseconds, the version nibble, 12 + 62 bits from the name's hash.
_HASH_BITS_V7 = 0x00000000_0000_0FFF_3FFF_FFFFFFFFFFFF
_SET_V7 = 0x00000000_0000_7000_8000_000000000000
_MS_MASK = (1 << 48) - 1


def name_uuid(namespace: UUID, name: str) -> UUID:
    """``uuid.uuid5(namespace, name)``."""
    digest = hashlib.sha1(namespace.bytes + name.encode(), usedforsecurity=False).digest()
    return UUID(int=(int.from_bytes(digest[:16], "big") & _KEEP) | _SET)


def time_ordered_name_uuid(namespace: UUID, name: str, unix_ms: int) -> UUID:
    """A version 7 UUID whose time is ``unix_ms`` and whose other bits come from the SHA-1 of
    ``namespace`` and ``name`` (as in version 5): ids made later sort later, and the same
    arguments always give the same id."""
    digest = hashlib.sha1(namespace.bytes + name.encode(), usedforsecurity=False).digest()
    hashed = int.from_bytes(digest[:16], "big") & _HASH_BITS_V7
    return UUID(int=((unix_ms & _MS_MASK) << 80) | hashed | _SET_V7)
