-- Steps go with their session (a statement trigger, DDL 007), manifests too (ON DELETE CASCADE).
DELETE FROM onboarding_sessions WHERE session_id = ANY($1::uuid[])
