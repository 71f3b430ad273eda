-- What other broker processes on this database must apply to their in-memory
-- index: a lender's dataset replaced (nin NULL), or one person's holding at a
-- lender changed by a push. `origin` names the process that made the change so
-- it can skip its own. Writers also NOTIFY gjeldsbro_changes so followers wake
-- at once. Rows older than a day are pruned when a dataset is committed.
CREATE TABLE index_changes (
    seq       BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    origin    TEXT    NOT NULL,
    lender_id TEXT    NOT NULL,
    nin       BIGINT,
    holds     BOOLEAN,
    at        TEXT    NOT NULL
);
CREATE INDEX index_changes_at ON index_changes (at);
