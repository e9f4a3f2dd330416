-- Kafka committed these events ($2) of app id $1 at $3.
UPDATE run_events SET published_at = $3
WHERE app_id = $1 AND event_id = ANY($2::text[]) AND published_at IS NULL
