-- Which of these session ids exist (for pruning the Redis mirror).
SELECT session_id FROM onboarding_sessions WHERE session_id = ANY($1::uuid[])
