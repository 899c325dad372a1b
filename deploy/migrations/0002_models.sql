-- 0002_models: every trained model version, and model records as dead letters.
--
-- Tables
--   model_version  one row per (model name, version) that `scent train` produced
--
-- Versions are content hashes
--   `version` is the first 16 hex digits of the SHA-256 of the model's JSON
--   (scent_operators::forecast::ForecastModel::version), so the same training history and
--   configuration give the same version. `scent train` inserts with ON CONFLICT DO NOTHING:
--   storing a version twice keeps the first row (its trained_at and stored_at).
--
-- What is stored
--   record is the encoded model record exactly as it is published to scent.models
--   (scent_operators::model_registry::encode_model_record), as bytes: jsonb would rewrite its
--   numbers (numeric, -0.0 becomes 0) and key order, and the version is the hash of the exact
--   model JSON, so a record rebuilt from jsonb could fail decode_model_record's check.
--   training is what the training run measured (source, rows, held-out skill per horizon,
--   importances), for people and dashboards; nothing reads it back to run a model.
--
-- Rollback
--   `scent train publish --name N [--version V]` re-publishes a stored record (default: the
--   latest trained_at) to the compacted models topic; the running engine applies it from the
--   epoch it reads it at. model_version_latest serves "the latest version of N".
--
-- Records are append-only: versions are never updated or deleted by scent.

CREATE TABLE model_version (
    name       text        NOT NULL,
    version    text        NOT NULL,
    kind       text        NOT NULL,
    product    text,
    trained_at timestamptz NOT NULL,
    stored_at  timestamptz NOT NULL DEFAULT now(),
    training   jsonb       NOT NULL,
    record     bytea       NOT NULL,
    CONSTRAINT model_version_pkey PRIMARY KEY (name, version),
    CONSTRAINT model_version_kind_check CHECK (kind IN ('forecast')),
    CONSTRAINT model_version_name_check
        CHECK (kind <> 'forecast' OR (product IS NOT NULL AND name = 'forecast/' || product)),
    CONSTRAINT model_version_version_check CHECK (version ~ '^[0-9a-f]{16}$'),
    CONSTRAINT model_version_training_check CHECK (jsonb_typeof(training) = 'object'),
    CONSTRAINT model_version_record_check CHECK (octet_length(record) > 0)
);

CREATE INDEX model_version_latest ON model_version (name, trained_at DESC, stored_at DESC);

-- ---------------------------------------------------------------------------------------
-- dead_letter: the engine reads scent.models as a third input, and a model record that
-- fails decode_model_record (bad JSON, a version that is not the content hash) is a dead
-- letter of stream 'models'.

ALTER TABLE dead_letter DROP CONSTRAINT dead_letter_stream_check;
ALTER TABLE dead_letter
    ADD CONSTRAINT dead_letter_stream_check CHECK (stream IN ('readings', 'batches', 'models'));
