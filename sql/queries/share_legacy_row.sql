-- The user's legacy row, share-locked: waits for a writer of the user (a batch, a repair) and
-- keeps the next one out until the reader's transaction ends.
SELECT 1 FROM legacy_onboarding_status WHERE user_id = $1 FOR SHARE
