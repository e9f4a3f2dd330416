-- The sessions of a batch's users with their newest manifest, locked in user_id order.
SELECT s.session_id, s.user_id, s.workspace_id, s.status, s.current_step,
       s.completion_percentage, s.steps_completed, s.legacy_snapshot, s.legacy_sha256,
       m.version AS bcm_version, m.checksum AS bcm_checksum, m.token_estimate AS bcm_token_estimate
FROM onboarding_sessions AS s
LEFT JOIN LATERAL (
    SELECT version, checksum, token_estimate
    FROM business_context_manifests
    WHERE session_id = s.session_id
    ORDER BY version DESC
    LIMIT 1
) AS m ON true
WHERE s.user_id = ANY($1::text[])
ORDER BY s.user_id
FOR UPDATE OF s
