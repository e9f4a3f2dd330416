-- Repair: the audit log says what verify rebuilt and why (action 'repair', outcome 'repaired').
INSERT INTO onboarding_migration_log (request_id, user_id, action, outcome, detail, created_at)
VALUES ($1, $2, 'repair', 'repaired', $3, $4)
