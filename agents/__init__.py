"""The migration: ``batch_applier`` applies one batch of requests, ``migration_agent`` feeds it.

``core/`` is pure, ``stores/`` talks to PostgreSQL and Redis, ``jobs/`` holds the operator jobs.
"""
