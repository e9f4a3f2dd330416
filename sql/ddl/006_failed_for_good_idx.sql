-- progress leaves users whose migration failed for a reason only fixing their data can cure
-- (unknown_legacy_step, invalid_legacy_data, ...) out of what remains: this index finds them
-- without reading the whole audit log.
CREATE INDEX IF NOT EXISTS onboarding_migration_log_failed_migrate_idx
    ON onboarding_migration_log (user_id)
    WHERE outcome = 'failed' AND action = 'migrate';
