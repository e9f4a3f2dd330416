-- Every partition's counter totals of an app id.
SELECT source_partition, totals FROM partition_counters WHERE app_id = $1
