"""Operator jobs over the stores: schema, seeding, validation, Redis resync and mirror repair.

They do I/O and run outside the migration hot path: from the command line, the HTTP API or a
worker's background task.
"""
