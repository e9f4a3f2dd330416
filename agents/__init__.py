"""The migration, which the Faust agent (``streams.migrate_agent``) calls: ``batch_applier``
applies one batch of requests (``batch_transaction`` is one try of it).

``core/`` is pure, ``stores/`` talks to PostgreSQL and Redis, ``jobs/`` holds the operator jobs.
Nothing here imports ``streams``: arrows point down.
"""
