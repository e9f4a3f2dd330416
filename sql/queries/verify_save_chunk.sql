-- A chunk checked: where the verification is, and its figures so far (one statement, in the
-- transaction that records the chunk's findings: a resume never counts a chunk twice).
UPDATE verifications
SET position = $2, checked = $3, mismatched = $4, by_check = $5, elapsed_s = $6, updated_at = $7
WHERE verify_id = $1
