-- The staged legacy rows whose user is not there yet.
INSERT INTO legacy_onboarding_status SELECT * FROM seed_legacy
ON CONFLICT (user_id) DO NOTHING
