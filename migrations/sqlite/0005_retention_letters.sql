-- Retention of the disclosure log, and copy letters (gjenpartsbrev).
--
-- Checkpoints: before the retention job deletes the records up to seq N, it
-- verifies them and stores (N, hash of record N). The verifier then starts from
-- the latest checkpoint's hash instead of the genesis hash, and appends after a
-- purge of the whole log go on from it. Checkpoints are append-only, strictly
-- increasing, and must name a record that exists with exactly that hash.
CREATE TABLE disclosure_checkpoints (
    seq        INTEGER PRIMARY KEY,
    hash       TEXT    NOT NULL,
    -- The `at` of record `seq`: the newest record the purge removed.
    record_at  TEXT    NOT NULL,
    created_at TEXT    NOT NULL
);
CREATE TRIGGER disclosure_checkpoints_valid BEFORE INSERT ON disclosure_checkpoints
WHEN NEW.seq <= (SELECT COALESCE(MAX(seq), 0) FROM disclosure_checkpoints)
  OR NOT EXISTS (SELECT 1 FROM disclosures WHERE seq = NEW.seq AND hash = NEW.hash)
BEGIN SELECT RAISE(ABORT, 'a checkpoint must follow the last one and name a stored record with its hash'); END;
CREATE TRIGGER disclosure_checkpoints_no_update BEFORE UPDATE ON disclosure_checkpoints
BEGIN SELECT RAISE(ABORT, 'disclosure checkpoints are append-only'); END;
CREATE TRIGGER disclosure_checkpoints_no_delete BEFORE DELETE ON disclosure_checkpoints
BEGIN SELECT RAISE(ABORT, 'disclosure checkpoints are append-only'); END;

-- The log stays append-only, except that records at or below the latest
-- checkpoint (already verified and summarised by it) may be deleted.
DROP TRIGGER disclosures_no_delete;
CREATE TRIGGER disclosures_no_delete BEFORE DELETE ON disclosures
WHEN OLD.seq > (SELECT COALESCE(MAX(seq), 0) FROM disclosure_checkpoints)
BEGIN SELECT RAISE(ABORT, 'the disclosure log is append-only'); END;

-- The letters job selects a day's records by time, and retention finds the
-- first record inside the period by time.
CREATE INDEX disclosures_at ON disclosures (at);

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
    letter_id  TEXT    PRIMARY KEY,
    batch_id   TEXT    NOT NULL REFERENCES letter_batches (batch_id),
    nin        INTEGER NOT NULL,
    day        TEXT    NOT NULL,
    file       TEXT    NOT NULL,
    created_at TEXT    NOT NULL
);
CREATE INDEX letters_batch ON letters (batch_id);
CREATE TABLE letter_disclosures (
    seq       INTEGER PRIMARY KEY,
    letter_id TEXT    NOT NULL REFERENCES letters (letter_id)
);
CREATE INDEX letter_disclosures_letter ON letter_disclosures (letter_id);
