-- The action changelog (schema scent.action/v2): every revision of a
-- decision is its own row (its own action_id); these columns make the
-- chain queryable without parsing the payload. Generated from the payload,
-- so writers need no change and v1 rows read as revision 1, not sealed.

ALTER TABLE action
    ADD COLUMN revision   integer GENERATED ALWAYS AS (COALESCE((payload ->> 'revision')::integer, 1)) STORED,
    ADD COLUMN supersedes text    GENERATED ALWAYS AS (payload ->> 'supersedes') STORED,
    ADD COLUMN sealed     boolean GENERATED ALWAYS AS (COALESCE((payload ->> 'sealed')::boolean, false)) STORED;

ALTER TABLE action
    ADD CONSTRAINT action_revision_check CHECK (revision >= 1),
    ADD CONSTRAINT action_supersedes_check CHECK ((revision = 1) = (supersedes IS NULL));

-- The final decision of a batch: its sealed batch_release.
CREATE INDEX action_batch_revision_idx ON action (batch, kind, revision);
