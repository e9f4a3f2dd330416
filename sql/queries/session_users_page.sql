-- One page of users that have a session, in user_id order (keyset pagination).
SELECT user_id FROM onboarding_sessions WHERE user_id > $1 ORDER BY user_id LIMIT $2
