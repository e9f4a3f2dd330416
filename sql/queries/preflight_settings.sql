-- What the preflight judges of the server: its version, connection limits, durability, and
-- whether the schema's bookkeeping table exists (the schema's checks read it then).
SELECT current_setting('server_version') AS server_version,
       current_setting('max_connections')::integer AS max_connections,
       current_setting('superuser_reserved_connections')::integer
         + coalesce(nullif(current_setting('reserved_connections', true), ''), '0')::integer
         AS reserved_connections,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::integer
         AS connections_in_use,
       current_setting('synchronous_commit') AS synchronous_commit,
       current_setting('fsync') AS fsync,
       to_regclass('schema_migrations') IS NOT NULL AS schema_recorded
