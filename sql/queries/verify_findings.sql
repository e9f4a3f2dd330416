SELECT user_id, check_name, kind, detail
FROM verification_findings
WHERE verify_id = $1
ORDER BY user_id, check_name
