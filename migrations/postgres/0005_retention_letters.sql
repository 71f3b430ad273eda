-- PostgreSQL: the same tables and meaning as migrations/sqlite/0005_retention_letters.sql.
--
-- Checkpoints: before the retention job deletes the records up to seq N, it
-- verifies them and stores (N, hash of record N). The verifier then starts from
-- the latest checkpoint's hash instead of the genesis hash, and appends after a
-- purge of the whole log go on from it. Checkpoints are append-only, strictly
-- increasing, and must name a record that exists with exactly that hash.
CREATE TABLE disclosure_checkpoints (
    seq        BIGINT PRIMARY KEY,
    hash       TEXT   NOT NULL,
    -- The `at` of record `seq`: the newest record the purge removed.
    record_at  TEXT   NOT NULL,
    created_at TEXT   NOT NULL
);

CREATE FUNCTION disclosure_checkpoints_valid() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq <= (SELECT COALESCE(MAX(seq), 0) FROM disclosure_checkpoints)
       OR NOT EXISTS (SELECT 1 FROM disclosures WHERE seq = NEW.seq AND hash = NEW.hash) THEN
        RAISE EXCEPTION 'a checkpoint must follow the last one and name a stored record with its hash'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER disclosure_checkpoints_valid BEFORE INSERT ON disclosure_checkpoints
    FOR EACH ROW EXECUTE FUNCTION disclosure_checkpoints_valid();

CREATE FUNCTION disclosure_checkpoints_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'disclosure checkpoints are append-only'
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER disclosure_checkpoints_no_update BEFORE UPDATE ON disclosure_checkpoints
    FOR EACH ROW EXECUTE FUNCTION disclosure_checkpoints_append_only();
CREATE TRIGGER disclosure_checkpoints_no_delete BEFORE DELETE ON disclosure_checkpoints
    FOR EACH ROW EXECUTE FUNCTION disclosure_checkpoints_append_only();
CREATE TRIGGER disclosure_checkpoints_no_truncate BEFORE TRUNCATE ON disclosure_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION disclosure_checkpoints_append_only();

-- The log stays append-only, except that records at or below the latest
-- checkpoint (already verified and summarised by it) may be deleted. TRUNCATE
-- stays refused (disclosures_no_truncate from 0001).
CREATE FUNCTION disclosures_delete_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.seq > (SELECT COALESCE(MAX(seq), 0) FROM disclosure_checkpoints) THEN
        RAISE EXCEPTION 'the disclosure log is append-only'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN OLD;
END;
$$;
DROP TRIGGER disclosures_no_delete ON disclosures;
CREATE TRIGGER disclosures_no_delete BEFORE DELETE ON disclosures
    FOR EACH ROW EXECUTE FUNCTION disclosures_delete_guard();

-- The letters job selects a day's records by time, and retention finds the
-- first record inside the period by time. `at` is RFC 3339 UTC text, compared as
-- bytes (COLLATE "C"; a locale collation may weigh punctuation differently), so
-- the index is built in that collation for those queries to use it.
CREATE INDEX disclosures_at ON disclosures (at COLLATE "C");

-- Copy letters. A run makes one batch (one manifest); each letter covers one
-- person's owed disclosures of one day; each disclosure is in at most one
-- letter (primary key), so a rerun never letters a disclosure twice.
CREATE TABLE letter_batches (
    batch_id     TEXT PRIMARY KEY,
    day          TEXT NOT NULL,
    manifest     TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    -- Set once every file and the manifest are written; a batch left without it
    -- (a crash) is completed by the next run.
    completed_at TEXT
);
CREATE TABLE letters (
    letter_id  TEXT   PRIMARY KEY,
    batch_id   TEXT   NOT NULL REFERENCES letter_batches (batch_id),
    nin        BIGINT NOT NULL,
    day        TEXT   NOT NULL,
    file       TEXT   NOT NULL,
    created_at TEXT   NOT NULL
);
CREATE INDEX letters_batch ON letters (batch_id);
CREATE TABLE letter_disclosures (
    seq       BIGINT PRIMARY KEY,
    letter_id TEXT   NOT NULL REFERENCES letters (letter_id)
);
CREATE INDEX letter_disclosures_letter ON letter_disclosures (letter_id);
