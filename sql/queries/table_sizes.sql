-- The service's tables (and the legacy table) by size on disk, indexes and TOAST included, with
-- PostgreSQL's count of live rows from its statistics (kept as transactions commit: close, not
-- exact; no scan of the table). NULL when the statistics know nothing of the table yet.
SELECT c.relname AS table_name,
       pg_total_relation_size(c.oid) AS total_bytes,
       s.n_live_tup AS rows_estimate
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables AS s ON s.relid = c.oid
WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema()
ORDER BY c.relname
