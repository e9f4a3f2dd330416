"""``name_uuid`` is ``uuid.uuid5``, bit for bit, on names like the service's and odd ones."""

from __future__ import annotations

import random
import uuid

from agents.core.name_uuids import name_uuid, time_ordered_name_uuid


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


def test_time_ordered_ids_carry_the_time_and_the_names_hash() -> None:
    rng = random.Random(11)
    namespace = uuid.UUID(int=rng.getrandbits(128))
    for n in range(300):
        name, unix_ms = f"user-{n}/{uuid.UUID(int=rng.getrandbits(128))}", rng.getrandbits(48)
        made = time_ordered_name_uuid(namespace, name, unix_ms)
        assert made == time_ordered_name_uuid(namespace, name, unix_ms)
        assert made.version == 7 and made.variant == uuid.RFC_4122
        assert made.int >> 80 == unix_ms
        # Below the time, the same bits as version 5 keeps of the name's hash.
        v5 = uuid.uuid5(namespace, name).int
        below_time = 0x0FFF_3FFF_FFFFFFFFFFFF
        assert made.int & below_time == v5 & below_time
