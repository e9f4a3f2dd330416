-- The DDL files applied so far.
SELECT version, name, sha256 FROM schema_migrations
