-- The embedded page (issue 12): single-use embed tokens and the sessions the
-- broker issues. Times are RFC 3339 UTC text of one fixed width, as in 0004.

-- The `jti` of every embed token that opened a session: each opens one. A
-- claim is kept until its token can no longer be accepted (`exp` plus the
-- leeway), then pruned.
CREATE TABLE embed_token_claims (
    jti        TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);
CREATE INDEX embed_token_claims_expires ON embed_token_claims (expires_at);

-- Sessions of the embedded page. The cookie holds a random id; only its
-- SHA-256 is stored, so a copy of this table opens no session. A session ends
-- at `idle_until` (moved on by each request) or `ends_at`, whichever is first;
-- ended sessions are pruned when new ones start.
CREATE TABLE embed_sessions (
    id_hash     TEXT    PRIMARY KEY,
    nin         INTEGER NOT NULL,
    partner_org TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    idle_until  TEXT    NOT NULL,
    ends_at     TEXT    NOT NULL
);
CREATE INDEX embed_sessions_ends ON embed_sessions (ends_at);
