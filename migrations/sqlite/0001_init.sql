-- Snapshot rows: each lender's daily dataset, one row per open loan. A load
-- writes a new generation beside the current one and then flips
-- datasets.generation in one short transaction; rows of any other generation
-- are invisible and cleaned up afterwards (or at the next start after a crash).
CREATE TABLE snapshot_loans (
    lender_id  TEXT    NOT NULL,
    generation INTEGER NOT NULL,
    nin        INTEGER NOT NULL,
    account_id TEXT    NOT NULL,
    loan       TEXT    NOT NULL
);
CREATE INDEX snapshot_loans_person ON snapshot_loans (nin, lender_id, generation);
CREATE INDEX snapshot_loans_generation ON snapshot_loans (lender_id, generation);

CREATE TABLE datasets (
    lender_id  TEXT    PRIMARY KEY,
    generation INTEGER NOT NULL,
    loaded_at  TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    customers  INTEGER NOT NULL,
    loans      INTEGER NOT NULL
);

CREATE TABLE counters (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('generation', 0);

-- Every delivery, accepted or rejected; never a national id.
CREATE TABLE deliveries (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    lender_id TEXT    NOT NULL,
    at        TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    accepted  INTEGER NOT NULL,
    rule      TEXT,
    position  INTEGER,
    detail    TEXT,
    customers INTEGER NOT NULL,
    loans     INTEGER NOT NULL
);

-- The disclosure log: append-only, each record hash-chained to the previous.
CREATE TABLE disclosures (
    seq            INTEGER PRIMARY KEY,
    query_id       TEXT    NOT NULL,
    at             TEXT    NOT NULL,
    recipient_org  TEXT    NOT NULL,
    on_behalf_of   TEXT,
    purpose        TEXT    NOT NULL,
    reference_id   TEXT    NOT NULL,
    nin            INTEGER NOT NULL,
    disclosed      TEXT    NOT NULL,
    letter_owed_by TEXT    NOT NULL,
    message        TEXT,
    prev_hash      TEXT    NOT NULL,
    hash           TEXT    NOT NULL
);
CREATE INDEX disclosures_person ON disclosures (nin);
CREATE TRIGGER disclosures_no_update BEFORE UPDATE ON disclosures
BEGIN SELECT RAISE(ABORT, 'the disclosure log is append-only'); END;
CREATE TRIGGER disclosures_no_delete BEFORE DELETE ON disclosures
BEGIN SELECT RAISE(ABORT, 'the disclosure log is append-only'); END;
