-- How many users `migrator verify` checks in the whole population (for its progress bar).
SELECT (SELECT count(*) FROM legacy_onboarding_status)
     + (SELECT count(*) FROM onboarding_sessions AS s
        WHERE NOT EXISTS (SELECT 1 FROM legacy_onboarding_status AS l WHERE l.user_id = s.user_id))
