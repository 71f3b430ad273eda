-- PostgreSQL schema; the same tables and meaning as migrations/sqlite/0001_init.sql.
--
-- Snapshot rows: each lender's daily dataset, one row per open loan. A load
-- writes a new generation beside the current one and then flips
-- datasets.generation in one short transaction; rows of any other generation
-- are invisible and cleaned up afterwards (or at the next start after a crash).
-- A load in progress holds a session advisory lock on its generation, so that
-- another process's clean-up never removes the rows of a live load.
CREATE TABLE snapshot_loans (
    lender_id  TEXT   NOT NULL,
    generation BIGINT NOT NULL,
    nin        BIGINT NOT NULL,
    account_id TEXT   NOT NULL,
    -- The loan's JSON exactly as serialised (TEXT, not JSONB: byte-identical
    -- to what the SQLite store holds).
    loan       TEXT   NOT NULL
);
-- Two cheap indexes keep bulk loads fast: by person (snapshot_for), and by
-- generation (persons_of, abort, removal of old generations). A load's
-- generation is the largest, so its index entries are appended at the right
-- edge; nin is the only randomly inserted key.
CREATE INDEX snapshot_loans_person ON snapshot_loans (nin);
CREATE INDEX snapshot_loans_generation ON snapshot_loans (generation);

CREATE TABLE datasets (
    lender_id  TEXT   PRIMARY KEY,
    generation BIGINT NOT NULL,
    loaded_at  TEXT   NOT NULL,
    source     TEXT   NOT NULL,
    customers  BIGINT NOT NULL,
    loans      BIGINT NOT NULL
);

-- Generations of dataset loads (the SQLite store's counters row 'generation').
CREATE SEQUENCE snapshot_generation AS BIGINT START WITH 1;

-- Every delivery, accepted or rejected; never a national id.
CREATE TABLE deliveries (
    id        BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lender_id TEXT    NOT NULL,
    at        TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    accepted  BOOLEAN NOT NULL,
    rule      TEXT,
    position  BIGINT,
    detail    TEXT,
    customers BIGINT  NOT NULL,
    loans     BIGINT  NOT NULL
);

-- The disclosure log: append-only, each record hash-chained to the previous.
-- Appends serialise on LOCK TABLE disclosures IN EXCLUSIVE MODE (across every
-- process on the database), so seq order is chain order.
CREATE TABLE disclosures (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    query_id       TEXT   NOT NULL,
    at             TEXT   NOT NULL,
    recipient_org  TEXT   NOT NULL,
    on_behalf_of   TEXT,
    purpose        TEXT   NOT NULL,
    reference_id   TEXT   NOT NULL,
    nin            BIGINT NOT NULL,
    disclosed      TEXT   NOT NULL,
    letter_owed_by TEXT   NOT NULL,
    message        TEXT,
    prev_hash      TEXT   NOT NULL,
    hash           TEXT   NOT NULL
);
CREATE INDEX disclosures_person ON disclosures (nin);

CREATE FUNCTION disclosures_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the disclosure log is append-only'
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER disclosures_no_update BEFORE UPDATE ON disclosures
    FOR EACH ROW EXECUTE FUNCTION disclosures_append_only();
CREATE TRIGGER disclosures_no_delete BEFORE DELETE ON disclosures
    FOR EACH ROW EXECUTE FUNCTION disclosures_append_only();
CREATE TRIGGER disclosures_no_truncate BEFORE TRUNCATE ON disclosures
    FOR EACH STATEMENT EXECUTE FUNCTION disclosures_append_only();
