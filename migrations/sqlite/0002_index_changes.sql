-- What other broker processes on this store must apply to their in-memory index:
-- a lender's dataset replaced (nin NULL), or one person's holding at a lender
-- changed by a push. `origin` names the process that made the change, so it can
-- skip its own. Rows older than a day are pruned when a dataset is committed.
CREATE TABLE index_changes (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    origin    TEXT    NOT NULL,
    lender_id TEXT    NOT NULL,
    nin       INTEGER,
    holds     INTEGER,
    at        TEXT    NOT NULL
);
