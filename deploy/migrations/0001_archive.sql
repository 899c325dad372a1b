-- 0001_archive: the PostgreSQL archive of scent's records.
--
-- Tables
--   reading        every archived sensor reading, keyed by its Kafka coordinates
--   action         every decision the engine published to scent.actions, keyed by action_id
--   dead_letter    every rejected record, keyed by its coordinates in the dead-letter topic
--   archive_offset per consumer and partition, the next Kafka offset to archive
--
-- Idempotency and exactly-once
--   The archiver writes rows with INSERT ... ON CONFLICT DO NOTHING on the natural keys
--   above, and advances archive_offset in the SAME transaction as the rows. A consumer that
--   resumes from archive_offset therefore neither loses nor duplicates a record, and a replay
--   of an already archived range is a no-op (src/archive/mod.rs describes the protocol).
--
-- Records are append-only
--   reading, action and dead_letter are GMP records: the archiver never updates or deletes
--   them (ON CONFLICT DO NOTHING, never DO UPDATE). A later migration adds the audit trail
--   (audit_event, e_signature, audit_anchor; see shared notes gmp-and-security.md) and
--   revokes UPDATE, DELETE and TRUNCATE on these tables from the application role; audit rows
--   will name a record as (entity, entity_id) = ('reading', id), ('action', action_id) or
--   ('dead_letter', id). archive_offset is bookkeeping, not a record: it moves forward in place.
--
-- Time
--   Event times (ts) and archived_at are timestamptz, i.e. UTC instants. archived_at is the
--   server clock at the start of the archiving transaction (now()), the same for every row of
--   one commit, so it also identifies the commit a row arrived in.
--
-- Vocabulary (CHECK constraints) mirrors operators/src/model.rs; adding a sensor kind, action
-- kind, decision or stage there needs a migration here. Reason codes are only checked for
-- shape here; an archiver older than the engine skips (and counts) dead letters whose code
-- it does not know.

-- ---------------------------------------------------------------------------------------
-- reading
--
-- Partitioning: not now. The table is append-only and queried by time range, so once it
-- holds months of data it should become PARTITION BY RANGE (ts) with monthly partitions
-- (cheap retention by DETACH/DROP, smaller indexes). A unique constraint on a partitioned
-- table must include the partition key, so reading_source_key then becomes
-- (source_topic, source_partition, source_offset, ts); ts is a function of the record, so
-- that is still an exact idempotency key. The archiver's INSERT names its conflict target,
-- and must change with it in the same migration.
CREATE TABLE reading (
    id               bigserial        PRIMARY KEY,
    plant            text             NOT NULL,
    line             text             NOT NULL,
    sensor           text             NOT NULL,
    kind             text             NOT NULL,
    ts               timestamptz      NOT NULL,
    seq              bigint           NOT NULL,
    batch            text,
    product          text,
    "values"         double precision[] NOT NULL,
    source_topic     text             NOT NULL,
    source_partition integer          NOT NULL,
    source_offset    bigint           NOT NULL,
    archived_at      timestamptz      NOT NULL DEFAULT now(),

    CONSTRAINT reading_source_key UNIQUE (source_topic, source_partition, source_offset),
    CONSTRAINT reading_kind_check
        CHECK (kind IN ('enose', 'temperature', 'humidity', 'pressure', 'ph', 'flow')),
    CONSTRAINT reading_identifiers_check CHECK (plant <> '' AND line <> '' AND sensor <> ''),
    CONSTRAINT reading_seq_check CHECK (seq >= 0),
    -- A flat, non-empty array without NULL elements; scalar kinds carry exactly one value.
    CONSTRAINT reading_values_check
        CHECK (cardinality("values") >= 1
               AND array_ndims("values") = 1
               AND array_position("values", NULL) IS NULL),
    CONSTRAINT reading_scalar_check CHECK (kind = 'enose' OR cardinality("values") = 1),
    CONSTRAINT reading_source_check CHECK (source_partition >= 0 AND source_offset >= 0)
);

CREATE INDEX reading_line_sensor_ts_idx ON reading (line, sensor, ts);
CREATE INDEX reading_batch_idx ON reading (batch) WHERE batch IS NOT NULL;

COMMENT ON TABLE reading IS
    'Archived sensor readings (append-only); one row per record of the readings topic, keyed by its Kafka coordinates.';
COMMENT ON COLUMN reading.seq IS 'Per-sensor sequence number assigned by the gateway.';
COMMENT ON COLUMN reading."values" IS 'One value for scalar kinds, one per channel for an e-nose array.';
COMMENT ON COLUMN reading.archived_at IS 'Server time of the archiving transaction.';

-- ---------------------------------------------------------------------------------------
-- action
--
-- payload is the whole Action as the engine produced it (serde JSON of
-- scent_operators::model::Action) and is the source of truth; the other columns are
-- projections of it for querying. The source columns are the action's own coordinates in
-- scent.actions when it was archived from Kafka, NULL when archived in-process.
CREATE TABLE action (
    action_id        text        PRIMARY KEY,
    kind             text        NOT NULL,
    plant            text        NOT NULL,
    line             text        NOT NULL,
    batch            text,
    product          text,
    decision         text,
    ts               timestamptz NOT NULL,
    reasons          jsonb       NOT NULL,
    evidence         jsonb       NOT NULL,
    payload          jsonb       NOT NULL,
    source_topic     text,
    source_partition integer,
    source_offset    bigint,
    archived_at      timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT action_source_key UNIQUE (source_topic, source_partition, source_offset),
    CONSTRAINT action_id_check CHECK (action_id <> ''),
    CONSTRAINT action_kind_check
        CHECK (kind IN ('batch_release', 'hold_line', 'schedule_maintenance', 'alert')),
    CONSTRAINT action_decision_check CHECK (decision IN ('release', 'hold', 'reject')),
    -- Only a batch release carries a decision, and it always does, for a named batch.
    CONSTRAINT action_decision_kind_check CHECK ((kind = 'batch_release') = (decision IS NOT NULL)),
    CONSTRAINT action_batch_release_batch_check CHECK (kind <> 'batch_release' OR batch IS NOT NULL),
    CONSTRAINT action_json_check
        CHECK (jsonb_typeof(reasons) = 'array'
               AND jsonb_typeof(evidence) = 'object'
               AND jsonb_typeof(payload) = 'object'),
    CONSTRAINT action_payload_check
        CHECK (payload ->> 'action_id' = action_id AND payload ->> 'kind' = kind),
    CONSTRAINT action_source_check
        CHECK ((source_topic IS NULL) = (source_partition IS NULL)
               AND (source_topic IS NULL) = (source_offset IS NULL)
               AND (source_partition IS NULL OR (source_partition >= 0 AND source_offset >= 0)))
);

CREATE INDEX action_line_ts_idx ON action (line, ts);
CREATE INDEX action_batch_idx ON action (batch) WHERE batch IS NOT NULL;
CREATE INDEX action_ts_idx ON action (ts, action_id COLLATE "C");

COMMENT ON TABLE action IS
    'Archived engine decisions (append-only); payload is the action as produced, the other columns project it.';
COMMENT ON COLUMN action.action_id IS 'Deterministic id: a replay of the same input yields the same id.';

-- ---------------------------------------------------------------------------------------
-- dead_letter
--
-- The rejected record's bytes are kept untouched (record_key, payload) with where it came
-- from (source_*), the stage and stable reason code that refused it, the detail text
-- (reason), and where the dead letter itself sits in the DLQ topic (dlq_*). A rejection
-- is keyed by its source coordinates, stage and reason code, so the copies a replay
-- writes to the DLQ archive once.
CREATE TABLE dead_letter (
    id               bigserial   PRIMARY KEY,
    stream           text        NOT NULL,
    source_topic     text        NOT NULL,
    source_partition integer     NOT NULL,
    source_offset    bigint      NOT NULL,
    stage            text        NOT NULL,
    reason_code      text        NOT NULL,
    reason           text        NOT NULL,
    record_key       bytea,
    payload          bytea       NOT NULL,
    dlq_topic        text,
    dlq_partition    integer,
    dlq_offset       bigint,
    archived_at      timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT dead_letter_dlq_key UNIQUE (dlq_topic, dlq_partition, dlq_offset),
    CONSTRAINT dead_letter_stream_check CHECK (stream IN ('readings', 'batches')),
    CONSTRAINT dead_letter_stage_check
        CHECK (stage IN ('decode', 'schema', 'validate', 'late', 'duplicate', 'process')),
    CONSTRAINT dead_letter_reason_code_check CHECK (reason_code ~ '^[a-z][a-z0-9_]*$'),
    CONSTRAINT dead_letter_dlq_check
        CHECK ((dlq_topic IS NULL) = (dlq_partition IS NULL)
               AND (dlq_topic IS NULL) = (dlq_offset IS NULL)
               AND (dlq_partition IS NULL OR (dlq_partition >= 0 AND dlq_offset >= 0)))
);

-- One row per rejected source record, wherever its dead letter sits: after a
-- restart the engine replays its input and writes the same rejection to the
-- DLQ again, at new DLQ coordinates.
CREATE UNIQUE INDEX dead_letter_source_key
    ON dead_letter (source_topic, source_partition, source_offset, stage, reason_code);
CREATE INDEX dead_letter_reason_idx ON dead_letter (reason_code, archived_at);

COMMENT ON TABLE dead_letter IS
    'Archived rejected records (append-only), original bytes untouched, with stage, reason code and coordinates.';
COMMENT ON COLUMN dead_letter.reason IS 'Human-readable detail of the rejection; reason_code is the stable code.';

-- ---------------------------------------------------------------------------------------
-- archive_offset
--
-- Written in the same transaction as the rows it covers and only ever moved forward, so
-- after a crash the consumer resumes exactly behind the last committed row.
CREATE TABLE archive_offset (
    consumer    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT archive_offset_pkey PRIMARY KEY (consumer, topic, partition),
    CONSTRAINT archive_offset_check CHECK (partition >= 0 AND next_offset >= 0)
);

COMMENT ON TABLE archive_offset IS
    'Per consumer and partition, the next Kafka offset to archive; committed atomically with the archived rows.';
