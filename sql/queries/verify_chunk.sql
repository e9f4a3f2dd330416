-- One chunk of `migrator verify`: for each given user ($1), what PostgreSQL holds and whether it
-- is what the user's legacy snapshot plans, compared and hashed here so that a few bytes per user
-- travel. The step catalog comes from agents/core/catalog.py ($2 step keys, $3 required flags).
-- Steps travel as bit masks (bit n-1: step n). Columns named *_ok are PostgreSQL's verdicts; a
-- false one that is a hash is recomputed in Python before it is reported (DDL 014 says why).
-- The chunk's steps and manifests are read set-based (one index scan with every session id of
-- the chunk), not session by session: a batch writes its sessions' steps step by step, so a
-- session's 24 rows lie on 24 pages, each shared with the other sessions of its batch.
WITH s AS MATERIALIZED (
    SELECT session_id, user_id, workspace_id, status, current_step,
           completion_percentage::float8 AS completion_percentage, steps_completed, created_at,
           updated_at, legacy_snapshot, legacy_sha256
    FROM onboarding_sessions
    WHERE user_id = ANY($1::text[])
), st AS (
    SELECT x.session_id,
           count(*) AS step_rows,
           coalesce(bit_or(1 << (x.step_number - 1)), 0) AS present,
           coalesce(bit_or(1 << (x.step_number - 1)) FILTER (WHERE x.status = 'completed'), 0)
               AS completed,
           coalesce(bit_or(1 << (x.step_number - 1)) FILTER (WHERE x.status = 'skipped'), 0)
               AS skipped,
           bool_and(x.step_key = ($2::text[])[x.step_number]
                    AND x.required = ($3::boolean[])[x.step_number]
                    AND (x.status = 'completed') = (x.completed_at IS NOT NULL)) AS rows_ok,
           min(x.completed_at) AS completed_min,
           max(x.completed_at) AS completed_max
    FROM onboarding_steps AS x
    WHERE x.session_id = ANY(ARRAY(SELECT session_id FROM s))
    GROUP BY x.session_id
), m AS (
    SELECT y.session_id,
           count(*) AS versions,
           bool_and(y.version = 1 AND y.user_id = y.owner AND y.manifest = y.planned)
               AS manifest_ok,
           bool_and(y.checksum = encode(sha256(convert_to(y.planned_text, 'UTF8')), 'hex')
                    AND y.token_estimate = ceil(char_length(y.planned_text) / 4.0))
               AS checksum_ok
    FROM (
        SELECT z.session_id, z.version, z.user_id, z.manifest, z.checksum, z.token_estimate,
               s.user_id AS owner, verify_manifest(s.legacy_snapshot) AS planned,
               verify_manifest_text(s.legacy_snapshot) AS planned_text
        FROM business_context_manifests AS z
        JOIN s USING (session_id)
        WHERE z.session_id = ANY(ARRAY(SELECT session_id FROM s))
        OFFSET 0  -- computed once per manifest, not once per use
    ) AS y
    GROUP BY y.session_id
)
SELECT u.user_id,
       l.status AS legacy_status,
       s.session_id,
       s.status,
       s.current_step,
       s.completion_percentage,
       s.steps_completed,
       s.created_at,
       s.updated_at,
       s.workspace_id,
       s.legacy_snapshot ->> 'workspace_id' IS NOT DISTINCT FROM s.workspace_id
           AND s.legacy_snapshot ->> 'user_id' IS NOT DISTINCT FROM s.user_id AS identity_ok,
       encode(sha256(convert_to(verify_snapshot_text(s.legacy_snapshot), 'UTF8')), 'hex')
           = s.legacy_sha256 AS snapshot_ok,
       -- drift: a column the legacy system owns differs from the snapshot, or a later write
       l.workspace_id IS NOT DISTINCT FROM s.legacy_snapshot ->> 'workspace_id'
           AND l.current_step IS NOT DISTINCT FROM s.legacy_snapshot ->> 'current_step'
           AND to_jsonb(l.completed_steps) = s.legacy_snapshot -> 'completed_steps'
           AND l.answers = s.legacy_snapshot -> 'answers'
           AND l.updated_at <= s.created_at AS legacy_unchanged,
       verify_planned_completed(s.legacy_snapshot) AS planned_completed,
       s.legacy_snapshot ->> 'status' = 'completed' AS planned_skips,
       coalesce(st.step_rows, 0) AS step_rows,
       st.present,
       st.completed,
       st.skipped,
       coalesce(st.rows_ok, true)
           AND st.completed_min IS NOT DISTINCT FROM st.completed_max
           AND (st.completed_min IS NULL
                OR st.completed_min = (s.legacy_snapshot ->> 'updated_at')::timestamptz)
           AS step_rows_ok,
       coalesce(m.versions, 0) AS manifests,
       coalesce(m.manifest_ok, true) AS manifest_ok,
       coalesce(m.checksum_ok, true) AS checksum_ok,
       -- A user without a session: the latest effect (migrate or rollback, not a dry run nor an
       -- answer repeated), and whether the legacy row is now what the rollback restored.
       e.outcome AS latest_effect,
       e.event ->> 'session_id' AS old_session_id,
       CASE WHEN e.outcome = 'rolled_back' THEN e.event ->> 'restored_legacy_sha256' = encode(sha256(convert_to(verify_snapshot_text(
           jsonb_build_object(
               'user_id', l.user_id, 'workspace_id', l.workspace_id, 'status', l.status,
               'current_step', l.current_step, 'completed_steps', to_jsonb(l.completed_steps),
               'answers', l.answers,
               'updated_at', to_char(l.updated_at AT TIME ZONE 'UTC',
                                     'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'))), 'UTF8')), 'hex')
       END AS restored_ok
FROM unnest($1::text[]) AS u (user_id)
LEFT JOIN legacy_onboarding_status AS l ON l.user_id = u.user_id
LEFT JOIN s ON s.user_id = u.user_id
LEFT JOIN st ON st.session_id = s.session_id
LEFT JOIN m ON m.session_id = s.session_id
LEFT JOIN LATERAL (
    SELECT g.outcome, g.detail -> 'outcome' AS event
    FROM onboarding_migration_log AS g
    WHERE s.session_id IS NULL  -- a one-time filter: users with a session skip this look-up
      AND g.user_id = u.user_id AND g.outcome IN ('migrated', 'rolled_back')
      AND NOT coalesce((g.detail -> 'outcome' ->> 'dry_run')::boolean, false)
      AND NOT coalesce((g.detail -> 'outcome' ->> 'already_done')::boolean, false)
    ORDER BY g.id DESC
    LIMIT 1
) AS e ON true
