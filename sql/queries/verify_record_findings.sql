-- A chunk's findings ($2 users, $3 checks, $4 kinds, $5 details, in step).
INSERT INTO verification_findings (verify_id, user_id, check_name, kind, detail)
SELECT $1, f.user_id, f.check_name, f.kind, f.detail
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS f (user_id, check_name, kind, detail)
ON CONFLICT DO NOTHING
