-- Which of these users have a session (for pruning the Redis mirror).
SELECT user_id FROM onboarding_sessions WHERE user_id = ANY($1::text[])
