-- PostgreSQL schema; the same tables and meaning as migrations/sqlite/0006_embed_sessions.sql.
CREATE TABLE embed_token_claims (
    jti        TEXT        PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX embed_token_claims_expires ON embed_token_claims (expires_at);

CREATE TABLE embed_sessions (
    id_hash     TEXT        PRIMARY KEY,
    nin         BIGINT      NOT NULL,
    partner_org TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    idle_until  TIMESTAMPTZ NOT NULL,
    ends_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX embed_sessions_ends ON embed_sessions (ends_at);
