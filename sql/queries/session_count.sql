-- How many sessions exist.
SELECT count(*) FROM onboarding_sessions
