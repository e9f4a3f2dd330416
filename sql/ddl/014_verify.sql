-- `migrator verify` (issue 22): its canonical-JSON helpers, its resumable state, its findings.
--
-- Verify hashes inside PostgreSQL. These functions write the canonical JSON of contract §6
-- (sorted keys, no spaces, UTF-8, the escapes of Python's json.dumps with ensure_ascii=False,
-- which are PostgreSQL's own for strings) for the values the service stores: objects of
-- scalars and of arrays of scalars, two levels deep. A value they do not cover (a float written
-- differently, a deeper nesting) only makes a hash differ; verify then recomputes it in Python
-- with schemas/canonical.py before it reports anything, so they speed verify up but never
-- decide alone.
-- A scalar, or an array of scalars.
CREATE OR REPLACE FUNCTION verify_canonical_flat(v jsonb) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(v)
        WHEN 'array' THEN
            '[' || coalesce((SELECT string_agg(e::text, ',' ORDER BY n)
                             FROM jsonb_array_elements(v) WITH ORDINALITY AS x (e, n)), '')
                || ']'
        ELSE v::text
    END
$$;

-- An object whose values are flat.
CREATE OR REPLACE FUNCTION verify_canonical_object1(v jsonb) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT '{' || coalesce((SELECT string_agg(to_json(k)::text || ':' || verify_canonical_flat(x),
                                              ',' ORDER BY k COLLATE "C")
                            FROM jsonb_each(v) AS e (k, x)), '') || '}'
$$;

-- An object whose values are flat or objects of flat values: a legacy snapshot, a manifest.
CREATE OR REPLACE FUNCTION verify_canonical(v jsonb) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT '{' || coalesce((SELECT string_agg(
                                to_json(k)::text || ':' || CASE jsonb_typeof(x)
                                    WHEN 'object' THEN verify_canonical_object1(x)
                                    ELSE verify_canonical_flat(x) END,
                                ',' ORDER BY k COLLATE "C")
                            FROM jsonb_each(v) AS e (k, x)), '') || '}'
$$;

-- One verification: what it covers, how far it got (the last user id checked: users are
-- checked in user_id order), and its result once finished. `--resume` goes on from `position`.
CREATE TABLE IF NOT EXISTS verifications (
    verify_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope        jsonb NOT NULL,          -- {"kind": "population" | "run" | "ids", ...}
    run_id       text,                    -- set for `verify --run NAME`
    started_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    position     text NOT NULL DEFAULT '', -- every user id <= position was checked
    checked      bigint NOT NULL DEFAULT 0,
    mismatched   bigint NOT NULL DEFAULT 0,  -- users with at least one finding
    elapsed_s    double precision NOT NULL DEFAULT 0,  -- time spent checking, over every resume
    by_check     jsonb NOT NULL DEFAULT '{}'::jsonb,   -- check name -> users
    ok           boolean                  -- set when finished: no finding at all
);

CREATE INDEX IF NOT EXISTS verifications_run_idx
    ON verifications (run_id, finished_at DESC) WHERE run_id IS NOT NULL;

-- Each mismatch found, by user and check, written with the chunk that found it (so a resumed
-- verification's report still holds what the chunks before the stop found).
CREATE TABLE IF NOT EXISTS verification_findings (
    verify_id  bigint NOT NULL REFERENCES verifications (verify_id) ON DELETE CASCADE,
    user_id    text NOT NULL,
    check_name text NOT NULL,
    kind       text NOT NULL,             -- postgres | redis | drift | unrepairable
    detail     text NOT NULL DEFAULT '',
    PRIMARY KEY (verify_id, user_id, check_name)
);

-- A string, an array of strings or null, canonical (a jsonb text separates elements with
-- ", ", which cannot occur inside a string's text, where every quote is escaped). SQL NULL (a
-- key not there) stays NULL.
CREATE OR REPLACE FUNCTION verify_canonical_strings(v jsonb) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT replace(v::text, '", "', '","')
$$;

-- The canonical JSON of a legacy snapshot: spelt out key by key for the answers the legacy
-- system writes (contract §5), the general (slower) functions above for anything else.
CREATE OR REPLACE FUNCTION verify_snapshot_text(s jsonb) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN jsonb_typeof(s -> 'answers') = 'object'
             AND (s -> 'answers') - ARRAY['audience', 'brand_assets', 'brand_voice',
                 'company_name', 'company_size', 'competitors', 'goals', 'industry',
                 'integrations', 'segments', 'sub_industry', 'success_metrics'] = '{}'::jsonb
             AND s - ARRAY['answers', 'completed_steps', 'current_step', 'status', 'updated_at',
                 'user_id', 'workspace_id'] = '{}'::jsonb
             AND s ?& ARRAY['completed_steps', 'current_step', 'status', 'updated_at', 'user_id',
                 'workspace_id']
        THEN '{"answers":{' || substr(
                coalesce(',"audience":' || verify_canonical_strings(s #> '{answers,audience}'), '')
                || coalesce(',"brand_assets":' || verify_canonical_strings(s #> '{answers,brand_assets}'), '')
                || coalesce(',"brand_voice":' || verify_canonical_strings(s #> '{answers,brand_voice}'), '')
                || coalesce(',"company_name":' || verify_canonical_strings(s #> '{answers,company_name}'), '')
                || coalesce(',"company_size":' || verify_canonical_strings(s #> '{answers,company_size}'), '')
                || coalesce(',"competitors":' || verify_canonical_strings(s #> '{answers,competitors}'), '')
                || coalesce(',"goals":' || verify_canonical_strings(s #> '{answers,goals}'), '')
                || coalesce(',"industry":' || verify_canonical_strings(s #> '{answers,industry}'), '')
                || coalesce(',"integrations":' || verify_canonical_strings(s #> '{answers,integrations}'), '')
                || coalesce(',"segments":' || verify_canonical_strings(s #> '{answers,segments}'), '')
                || coalesce(',"sub_industry":' || verify_canonical_strings(s #> '{answers,sub_industry}'), '')
                || coalesce(',"success_metrics":' || verify_canonical_strings(s #> '{answers,success_metrics}'), '')
                , 2)
            || '},"completed_steps":' || verify_canonical_strings(s -> 'completed_steps')
            || ',"current_step":' || verify_canonical_strings(s -> 'current_step')
            || ',"status":' || verify_canonical_strings(s -> 'status')
            || ',"updated_at":' || verify_canonical_strings(s -> 'updated_at')
            || ',"user_id":' || verify_canonical_strings(s -> 'user_id')
            || ',"workspace_id":' || verify_canonical_strings(s -> 'workspace_id') || '}'
        ELSE verify_canonical(s)
    END
$$;

-- The canonical JSON of the manifest the planner builds from a snapshot (agents/core/manifest.py:
-- build_manifest, keys in sorted order; a missing answer is null).
CREATE OR REPLACE FUNCTION verify_manifest_text(s jsonb) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT '{"audience":{"segments":'
        || coalesce(verify_canonical_strings(s #> '{answers,segments}'), 'null')
        || ',"target":' || coalesce(verify_canonical_strings(s #> '{answers,audience}'), 'null')
        || '},"brand":{"assets":'
        || coalesce(verify_canonical_strings(s #> '{answers,brand_assets}'), 'null')
        || ',"voice":'
        || coalesce(verify_canonical_strings(s #> '{answers,brand_voice}'), 'null')
        || '},"company":{"industry":'
        || coalesce(verify_canonical_strings(s #> '{answers,industry}'), 'null')
        || ',"name":' || coalesce(verify_canonical_strings(s #> '{answers,company_name}'), 'null')
        || ',"size":' || coalesce(verify_canonical_strings(s #> '{answers,company_size}'), 'null')
        || ',"sub_industry":'
        || coalesce(verify_canonical_strings(s #> '{answers,sub_industry}'), 'null')
        || '},"competitors":'
        || coalesce(verify_canonical_strings(s #> '{answers,competitors}'), 'null')
        || ',"goals":{"primary":'
        || coalesce(verify_canonical_strings(s #> '{answers,goals}'), 'null')
        || ',"success_metrics":'
        || coalesce(verify_canonical_strings(s #> '{answers,success_metrics}'), 'null')
        || '},"integrations":'
        || coalesce(verify_canonical_strings(s #> '{answers,integrations}'), 'null')
        || ',"manifest_version":1,"source":{"legacy_updated_at":'
        || coalesce(verify_canonical_strings(s -> 'updated_at'), 'null')
        || ',"system":"legacy_onboarding_status"},"user_id":'
        || coalesce(verify_canonical_strings(s -> 'user_id'), 'null')
        || ',"workspace_id":' || coalesce(verify_canonical_strings(s -> 'workspace_id'), 'null')
        || '}'
$$;

-- The manifest itself, as jsonb, from a snapshot: a stored manifest must equal it.
CREATE OR REPLACE FUNCTION verify_manifest(s jsonb) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object(
        'manifest_version', 1,
        'user_id', s -> 'user_id',
        'workspace_id', s -> 'workspace_id',
        'company', jsonb_build_object(
            'name', s #> '{answers,company_name}', 'size', s #> '{answers,company_size}',
            'industry', s #> '{answers,industry}',
            'sub_industry', s #> '{answers,sub_industry}'),
        'goals', jsonb_build_object(
            'primary', s #> '{answers,goals}',
            'success_metrics', s #> '{answers,success_metrics}'),
        'audience', jsonb_build_object(
            'target', s #> '{answers,audience}', 'segments', s #> '{answers,segments}'),
        'brand', jsonb_build_object(
            'voice', s #> '{answers,brand_voice}', 'assets', s #> '{answers,brand_assets}'),
        'competitors', s #> '{answers,competitors}',
        'integrations', s #> '{answers,integrations}',
        'source', jsonb_build_object(
            'system', 'legacy_onboarding_status', 'legacy_updated_at', s -> 'updated_at'))
$$;

-- The steps a snapshot plans (contract §6), as bit masks (bit n-1: step n): the completed
-- ones, and the skipped ones (a legacy user who completed onboarding skips the optional steps
-- not done; everyone else has them pending). The legacy step of each new step is contract §5's
-- table; `tests/core/test_verify_rules.py` checks these masks against agents/core/catalog.py.
CREATE OR REPLACE FUNCTION verify_planned_completed(s jsonb) RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT (CASE WHEN s -> 'completed_steps' ? 'account' THEN 3 ELSE 0 END)
         | (CASE WHEN s -> 'completed_steps' ? 'profile' THEN 12 ELSE 0 END)
         | (CASE WHEN s -> 'completed_steps' ? 'workspace' THEN 48 ELSE 0 END)
         | (CASE WHEN s -> 'completed_steps' ? 'company' THEN 192 ELSE 0 END)
         | (CASE WHEN s -> 'completed_steps' ? 'industry' THEN 768 ELSE 0 END)
         | (CASE WHEN s -> 'completed_steps' ? 'goals' THEN 3072 ELSE 0 END)
         | (CASE WHEN s -> 'completed_steps' ? 'audience' THEN 12288 ELSE 0 END)
         | (CASE WHEN s -> 'completed_steps' ? 'brand' THEN 49152 ELSE 0 END)
         | (CASE WHEN s -> 'completed_steps' ? 'competitors' THEN 196608 ELSE 0 END)
         | (CASE WHEN s -> 'completed_steps' ? 'integrations' THEN 786432 ELSE 0 END)
         | (CASE WHEN s -> 'completed_steps' ? 'team' THEN 3145728 ELSE 0 END)
         | (CASE WHEN s -> 'completed_steps' ? 'review' THEN 12582912 ELSE 0 END)
         -- a completed legacy user has every required step completed
         | (CASE WHEN s ->> 'status' = 'completed' THEN 12604887 ELSE 0 END)
$$;
