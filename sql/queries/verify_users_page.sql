-- One page of `migrator verify`'s population, in user_id order after $1 (keyset): every legacy
-- user and every user holding a session (a session whose legacy row is gone is checked too).
SELECT user_id FROM (
    (SELECT user_id FROM legacy_onboarding_status WHERE user_id > $1 ORDER BY user_id LIMIT $2)
    UNION
    (SELECT user_id FROM onboarding_sessions WHERE user_id > $1 ORDER BY user_id LIMIT $2)
) AS a
ORDER BY user_id
LIMIT $2
