-- Release the session-level advisory lock $1.
SELECT pg_advisory_unlock($1)
