-- Every pushed loan (loan NULL: closed), so that a dataset load that was
-- running while pushes arrived can replay them onto its new generation when it
-- flips: a push is never lost to a load extracted before it. Pruned after two
-- days at dataset commits.
CREATE TABLE push_journal (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    lender_id  TEXT    NOT NULL,
    nin        INTEGER NOT NULL,
    account_id TEXT    NOT NULL,
    loan       TEXT,
    at         TEXT    NOT NULL
);
CREATE INDEX push_journal_lender ON push_journal (lender_id, seq);
