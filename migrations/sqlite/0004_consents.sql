-- Consents (issue 5): a person's permission for one client organisation to
-- fetch their debt for one purpose. Kept until two years after `ends_at`, then
-- purged (the purge keys on `ends_at`; keep the name). Times are RFC 3339 UTC
-- text of one fixed width (microseconds, `Z`), so text order is time order.
CREATE TABLE consents (
    -- UUID v4: unguessable, and never derived from the person.
    id                TEXT    PRIMARY KEY,
    -- The organisation that created it and alone may use it.
    client_org        TEXT    NOT NULL,
    -- The client's own id for idempotent creation.
    client_consent_id TEXT    NOT NULL,
    nin               INTEGER NOT NULL,
    -- debt.unsecured.presentation | debt.unsecured.processing
    scope             TEXT    NOT NULL,
    -- The duration asked for (0: one use within 10 minutes), before the cut to
    -- the purpose's maximum; compared on an idempotent repeat.
    requested_days    INTEGER NOT NULL,
    one_time          INTEGER NOT NULL,
    -- partner (the client asserts the person agreed in its own flow) or person
    -- (the person pressed the button in the embedded page, with their own token).
    given_via         TEXT    NOT NULL,
    created_at        TEXT    NOT NULL,
    ends_at           TEXT    NOT NULL,
    -- Set by the one use of a one-time consent, in the same transaction as the
    -- disclosure record.
    spent_at          TEXT,
    last_used_at      TEXT,
    -- Withdrawn by the person or deleted by the client.
    archived_at       TEXT,
    -- person | client
    archived_by       TEXT,
    UNIQUE (client_org, client_consent_id)
);
CREATE INDEX consents_person ON consents (nin);
CREATE INDEX consents_ends_at ON consents (ends_at);

-- Every attempt by the owning client to use a consent: `disclosed` (a lookup
-- answered and recorded, query_id joins the disclosure log) or `refused`
-- (withdrawn, expired or spent). Shown to the person.
CREATE TABLE consent_uses (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    consent_id TEXT    NOT NULL REFERENCES consents (id) ON DELETE CASCADE,
    at         TEXT    NOT NULL,
    by_org     TEXT    NOT NULL,
    query_id   TEXT,
    outcome    TEXT    NOT NULL
);
CREATE INDEX consent_uses_consent ON consent_uses (consent_id, seq);

-- The consent feed (`GET /feed/v1/consent`): per client, numbered 1, 2, 3, ...
-- without gaps, so no client learns how many consents other clients hold.
-- Carries consent ids, never a national id.
CREATE TABLE consent_events (
    client_org TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    consent_id TEXT    NOT NULL,
    -- created | archived
    kind       TEXT    NOT NULL,
    at         TEXT    NOT NULL,
    PRIMARY KEY (client_org, seq)
);
-- The last sequence number handed out per client (a row lock per client
-- serialises numbering across processes on PostgreSQL).
CREATE TABLE consent_feed_counters (
    client_org TEXT    PRIMARY KEY,
    last_seq   INTEGER NOT NULL
);
