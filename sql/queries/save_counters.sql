INSERT INTO partition_counters (app_id, source_partition, totals, updated_at)
SELECT $1, t.source_partition, t.totals, $4
FROM unnest($2::integer[], $3::jsonb[]) AS t (source_partition, totals)
ON CONFLICT (app_id, source_partition)
DO UPDATE SET totals = EXCLUDED.totals, updated_at = EXCLUDED.updated_at
