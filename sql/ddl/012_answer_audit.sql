-- The answer audit (issue: every request answered). Each worker audits the request partitions
-- it owns: every request record below the group's committed offset has exactly one answer on
-- the outcome or dead-letter topics. Its position per partition lives here, so the audit goes on
-- where it stopped whichever worker owns the partition next, and reads each record once.
CREATE TABLE IF NOT EXISTS answer_audit (
    app_id        text NOT NULL,
    partition     integer NOT NULL,
    floor         bigint NOT NULL,      -- where the audit began: answers to records below are not judged
    audited_to    bigint NOT NULL,      -- every request record below this offset was judged
    answers_read  jsonb NOT NULL,       -- {"answer topic": next offset of its partition to read}
    answered      jsonb NOT NULL,       -- [[start, end), ...]: offsets >= audited_to seen answered
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (app_id, partition)
);

-- What the audit found: a request record with no answer, or with more than one. An unanswered
-- record is closed when the record `migrator replay --unanswered` published for it is answered;
-- a duplicate when an operator acknowledges it (`migrator audit --acknowledge`).
CREATE TABLE IF NOT EXISTS answer_findings (
    app_id          text NOT NULL,
    partition       integer NOT NULL,
    request_offset  bigint NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('unanswered', 'duplicated')),
    extra_answers   integer NOT NULL DEFAULT 0,  -- duplicated: answers beyond the first
    request_id      text,
    user_id         text,
    found_at        timestamptz NOT NULL,
    found_by        text NOT NULL,               -- host:pid of the worker, or the CLI
    closed_at       timestamptz,
    closed_by       text,
    PRIMARY KEY (app_id, partition, request_offset, kind)
);

CREATE INDEX IF NOT EXISTS answer_findings_open_idx
    ON answer_findings (app_id, partition, request_offset) WHERE closed_at IS NULL;
