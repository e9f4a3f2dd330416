-- The records of a batch already answered, by position (see ddl/005): one primary-key probe
-- per position. The LIMIT keeps the subquery from being merged into a join, so that the planner
-- cannot choose to hash the whole table instead: for a batch of a few hundred positions it
-- estimates that as cheaper than as many probes, and it took 68 ms a call on a table of tens of
-- thousands of rows (0.3-0.8 ms by the probes).
SELECT b.source_partition, b.source_offset, p.record_digest, p.outcome
FROM unnest($2::integer[], $3::bigint[]) AS b (source_partition, source_offset)
CROSS JOIN LATERAL (
    SELECT record_digest, outcome
    FROM processed_records
    WHERE app_id = $1
      AND source_partition = b.source_partition
      AND source_offset = b.source_offset
    LIMIT 1
) AS p
