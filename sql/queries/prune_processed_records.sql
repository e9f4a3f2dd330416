-- At most $5 answers of one partition that no worker will read again: below the group's
-- committed offset $3 and given before $4 (the retention). The primary key orders them by
-- offset, so each batch is one index range scan; batches keep every transaction short.
WITH doomed AS (
    SELECT source_offset
    FROM processed_records
    WHERE app_id = $1 AND source_partition = $2 AND source_offset < $3 AND processed_at < $4
    ORDER BY source_offset
    LIMIT $5
)
DELETE FROM processed_records AS p
USING doomed AS d
WHERE p.app_id = $1 AND p.source_partition = $2 AND p.source_offset = d.source_offset
