"""The adapters to the servers: ``postgres`` (the source of truth) and ``redis_mirror``.

Every SQL statement and Redis command the service runs lives here, with the row shapes it reads
and writes; callers hand over typed rows and get typed rows back.
"""
