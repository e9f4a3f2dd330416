-- The records of a batch already answered, by position (see ddl/005).
SELECT p.source_partition, p.source_offset, p.record_digest, p.outcome
FROM processed_records AS p
JOIN unnest($2::integer[], $3::bigint[]) AS b (source_partition, source_offset)
  USING (source_partition, source_offset)
WHERE p.app_id = $1
