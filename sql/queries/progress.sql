-- Legacy users, those migrated, and those not migrated whose migrate request failed (not as a
-- dry run) with a code that only fixing the data cures ($1): they are done, not remaining.
SELECT
    (SELECT count(*) FROM legacy_onboarding_status) AS legacy_total,
    (SELECT count(*) FROM legacy_onboarding_status WHERE status = 'migrated') AS migrated,
    (SELECT count(DISTINCT f.user_id)
     FROM onboarding_migration_log AS f
     JOIN legacy_onboarding_status AS l USING (user_id)
     WHERE f.outcome = 'failed' AND f.action = 'migrate' AND l.status <> 'migrated'
       AND f.error_code = ANY($1::text[])
       AND NOT coalesce((f.detail -> 'outcome' ->> 'dry_run')::boolean, false)
    ) AS failed_for_good
