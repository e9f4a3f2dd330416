-- The snapshot and manifests of some users' sessions: verify recomputes in Python the hashes
-- PostgreSQL found different (and repair plans from the snapshot).
SELECT s.user_id, s.session_id, s.created_at, s.legacy_snapshot, s.legacy_sha256,
       coalesce(
           (SELECT jsonb_agg(jsonb_build_object(
                       'version', m.version, 'manifest', m.manifest, 'checksum', m.checksum,
                       'token_estimate', m.token_estimate) ORDER BY m.version)
            FROM business_context_manifests AS m WHERE m.session_id = s.session_id),
           '[]'::jsonb
       ) AS manifests
FROM onboarding_sessions AS s
WHERE s.user_id = ANY($1::text[])
