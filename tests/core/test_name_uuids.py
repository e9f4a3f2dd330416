"""``name_uuid`` is ``uuid.uuid5``, bit for bit, on names like the service's and odd ones."""

from __future__ import annotations

import random
import uuid

from agents.core.name_uuids import name_uuid


def test_equals_uuid5_on_many_names() -> None:
    rng = random.Random(7)
    namespaces = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(5)] + [uuid.NAMESPACE_DNS]
    names = ["", "a", "é☀️", "user-0000001/" + str(uuid.UUID(int=rng.getrandbits(128)))]
    names += [f"{uuid.UUID(int=rng.getrandbits(128))}/{n}/{n % 8}:{n * 977}" for n in range(500)]
    for namespace in namespaces:
        for name in names:
            made = name_uuid(namespace, name)
            assert made == uuid.uuid5(namespace, name)
            assert made.version == 5 and made.variant == uuid.RFC_4122
