-- One page of legacy users not yet migrated, in user_id order (keyset pagination on the
-- partial index legacy_onboarding_status_not_migrated_idx).
SELECT user_id
FROM legacy_onboarding_status
WHERE status <> 'migrated' AND user_id > $1
ORDER BY user_id
LIMIT $2
