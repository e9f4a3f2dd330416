-- The answer a record position was given, kept as the exact bytes published (bytea) instead of
-- jsonb: a redone batch answers with them unchanged, and nothing queries into them. jsonb made
-- PostgreSQL parse and rebuild every outcome a third time (ledger and audit log hold it as jsonb
-- already): about 3.5 µs of its CPU a row for a 580-byte outcome, and a tenth more space.
-- Rows written before keep what jsonb made of their outcome (the same document, reformatted).
ALTER TABLE processed_records
    ALTER COLUMN outcome TYPE bytea USING convert_to(outcome::text, 'UTF8');

COMMENT ON COLUMN processed_records.outcome IS
    'the outcome event as first published, byte for byte; NULL: dead-lettered';
