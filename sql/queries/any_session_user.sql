-- The user of the first session at or after a random session id: a uniform pick among all
-- sessions through the primary key (session ids are uniformly spread UUIDs).
(SELECT user_id FROM onboarding_sessions WHERE session_id >= $1 ORDER BY session_id LIMIT 1)
UNION ALL
(SELECT user_id FROM onboarding_sessions ORDER BY session_id LIMIT 1)
LIMIT 1
