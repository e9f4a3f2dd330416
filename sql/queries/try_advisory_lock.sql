-- Take the session-level advisory lock $1 if it is free (true) or not (false).
SELECT pg_try_advisory_lock($1)
