-- The legacy system's view of migrated users; rollback restores each row from its snapshot.
UPDATE legacy_onboarding_status
SET status = 'migrated', updated_at = $2
WHERE user_id = ANY($1::text[])
