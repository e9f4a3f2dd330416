-- The two checksum columns' format, checked in a tenth of the time.
--
-- 002 checked a SHA-256 hex digest with the regular expression '^[0-9a-f]{64}$'. PostgreSQL's
-- regex engine builds 64 states for the bounded repetition and walks them for every row: 6.5 µs
-- a row, measured on 200,000 digests, against 0.55 µs for the length and an unbounded class
-- below. A migrated user writes one session and one manifest, so that was about 13 µs of
-- PostgreSQL time a user, 6-7 % of all of it in a flood (perf, 100,000 users). The rule is the
-- same: exactly 64 characters, each one of 0-9 a-f.
ALTER TABLE onboarding_sessions
    DROP CONSTRAINT IF EXISTS onboarding_sessions_legacy_sha256_check,
    ADD CONSTRAINT onboarding_sessions_legacy_sha256_check
        CHECK (length(legacy_sha256) = 64 AND legacy_sha256 ~ '^[0-9a-f]+$');

ALTER TABLE business_context_manifests
    DROP CONSTRAINT IF EXISTS business_context_manifests_checksum_check,
    ADD CONSTRAINT business_context_manifests_checksum_check
        CHECK (length(checksum) = 64 AND checksum ~ '^[0-9a-f]+$');
