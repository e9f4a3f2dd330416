SELECT count(*) AS legacy_total,
       count(*) FILTER (WHERE status = 'migrated') AS migrated
FROM legacy_onboarding_status
