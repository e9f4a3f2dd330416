-- Repair: the manifest its snapshot plans, version 1.
INSERT INTO business_context_manifests
    (session_id, user_id, version, manifest, checksum, token_estimate, created_at)
VALUES ($1, $2, 1, $3, $4, $5, $6)
