-- PostgreSQL schema; the same tables and meaning as migrations/sqlite/0004_consents.sql.
-- Consents are kept until two years after `ends_at`, then purged (the purge
-- keys on `ends_at`; keep the name).
CREATE TABLE consents (
    id                TEXT        PRIMARY KEY,
    client_org        TEXT        NOT NULL,
    client_consent_id TEXT        NOT NULL,
    nin               BIGINT      NOT NULL,
    scope             TEXT        NOT NULL,
    requested_days    BIGINT      NOT NULL,
    one_time          BOOLEAN     NOT NULL,
    given_via         TEXT        NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    ends_at           TIMESTAMPTZ NOT NULL,
    spent_at          TIMESTAMPTZ,
    last_used_at      TIMESTAMPTZ,
    archived_at       TIMESTAMPTZ,
    archived_by       TEXT,
    UNIQUE (client_org, client_consent_id)
);
CREATE INDEX consents_person ON consents (nin);
CREATE INDEX consents_ends_at ON consents (ends_at);

CREATE TABLE consent_uses (
    seq        BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consent_id TEXT        NOT NULL REFERENCES consents (id) ON DELETE CASCADE,
    at         TIMESTAMPTZ NOT NULL,
    by_org     TEXT        NOT NULL,
    query_id   TEXT,
    outcome    TEXT        NOT NULL
);
CREATE INDEX consent_uses_consent ON consent_uses (consent_id, seq);

CREATE TABLE consent_events (
    client_org TEXT        NOT NULL,
    seq        BIGINT      NOT NULL,
    consent_id TEXT        NOT NULL,
    kind       TEXT        NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (client_org, seq)
);
CREATE TABLE consent_feed_counters (
    client_org TEXT   PRIMARY KEY,
    last_seq   BIGINT NOT NULL
);
