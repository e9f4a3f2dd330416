-- Requests of a batch that already succeeded (the idempotency ledger).
SELECT request_id, user_id, action, outcome, source_partition, source_offset
FROM migration_requests
WHERE request_id = ANY($1::uuid[])
