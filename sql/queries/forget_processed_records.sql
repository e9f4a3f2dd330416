-- Positions now holding other records (the topic was recreated): they are answered afresh.
DELETE FROM processed_records AS p
USING unnest($2::integer[], $3::bigint[]) AS b (source_partition, source_offset)
WHERE p.app_id = $1 AND p.source_partition = b.source_partition AND p.source_offset = b.source_offset
