-- Wait for the session-level advisory lock $1.
SELECT pg_advisory_lock($1)
