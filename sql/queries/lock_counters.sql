-- The counter rows of the batch's partitions, locked so two workers never add to one at once.
SELECT source_partition, totals
FROM partition_counters
WHERE app_id = $1 AND source_partition = ANY($2::integer[])
ORDER BY source_partition
FOR UPDATE
