-- Lock the legacy rows of some users (user_id order, as batches do) without reading them.
SELECT user_id FROM legacy_onboarding_status
WHERE user_id = ANY($1::text[])
ORDER BY user_id
FOR UPDATE
