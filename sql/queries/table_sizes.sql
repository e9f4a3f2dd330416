-- The service's tables (and the legacy table) by size on disk, indexes and TOAST included,
-- with PostgreSQL's row estimate (reltuples: as fresh as the last VACUUM or ANALYZE; -1 before).
SELECT c.relname AS table_name,
       pg_total_relation_size(c.oid) AS total_bytes,
       c.reltuples::bigint AS rows_estimate
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema()
ORDER BY c.relname
