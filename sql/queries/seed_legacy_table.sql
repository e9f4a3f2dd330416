-- The seeder's staging table: rows are COPYed here, then inserted where new.
CREATE TEMP TABLE IF NOT EXISTS seed_legacy
    (LIKE legacy_onboarding_status INCLUDING DEFAULTS) ON COMMIT DELETE ROWS
