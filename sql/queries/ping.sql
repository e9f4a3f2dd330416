-- Whether PostgreSQL answers.
SELECT 1
