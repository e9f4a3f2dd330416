"""The pure core: plans, decisions, outcomes, counters and checks.

Nothing here does I/O: no clock, no uuid4, no awaits, no Kafka, PostgreSQL or Redis client and
nothing from ``streams``. Time and identity come in as arguments, so every function is a plain
input-to-output mapping that unit tests and property tests can drive without servers
(``tests/core/test_boundaries_and_schemas.py`` enforces it).
"""
