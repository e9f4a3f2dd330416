-- answer audit: open counts (agents/stores/answer_audit.py)
SELECT kind, partition, count(*) AS n
FROM answer_findings
WHERE app_id = $1
AND closed_at IS NULL
GROUP BY kind, partition
