-- The audit log's newest id (NULL while it is empty): the primary key's last entry.
SELECT max(id) FROM onboarding_migration_log
