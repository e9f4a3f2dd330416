-- enqueue and POST migrate {"all": true} hold rolled-back users out of "everyone not yet
-- migrated" (a cohort an operator took back stays back unless asked): this index finds them.
CREATE INDEX IF NOT EXISTS onboarding_migration_log_rolled_back_idx
    ON onboarding_migration_log (user_id)
    WHERE outcome = 'rolled_back';
