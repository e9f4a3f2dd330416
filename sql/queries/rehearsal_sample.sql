-- A random sample of the legacy users a rollout would migrate: not marked migrated, no session.
SELECT l.user_id
FROM legacy_onboarding_status AS l
WHERE l.status <> 'migrated'
  AND NOT EXISTS (SELECT 1 FROM onboarding_sessions AS s WHERE s.user_id = l.user_id)
ORDER BY random()
LIMIT $1
