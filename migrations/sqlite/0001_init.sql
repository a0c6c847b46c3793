-- convmsg schema (SQLite). Times are Unix milliseconds (UTC). Every row carries its tenant.

CREATE TABLE tokens (
    token_sha256 TEXT PRIMARY KEY NOT NULL,
    tenant       TEXT NOT NULL,
    scopes       TEXT NOT NULL,            -- comma-separated: send,read,admin
    label        TEXT NOT NULL DEFAULT '',
    created_ms   INTEGER NOT NULL
);

-- Per-tenant sequence behind request names (MSJ-00000001).
CREATE TABLE tenant_sequences (
    tenant     TEXT PRIMARY KEY NOT NULL,
    last_value INTEGER NOT NULL
);

CREATE TABLE channels (
    id                    TEXT PRIMARY KEY NOT NULL,
    tenant                TEXT NOT NULL,
    developer_name        TEXT NOT NULL,
    master_label          TEXT NOT NULL,
    message_type          TEXT NOT NULL,
    consent_type          TEXT NOT NULL,
    provider              TEXT NOT NULL,
    platform_key          TEXT NOT NULL,
    is_active             INTEGER NOT NULL,
    rate_limit_per_second REAL NOT NULL,
    provider_options      TEXT NOT NULL,   -- JSON object
    created_ms            INTEGER NOT NULL,
    updated_ms            INTEGER NOT NULL,
    UNIQUE (tenant, developer_name)
);

CREATE TABLE message_definitions (
    id                TEXT PRIMARY KEY NOT NULL,
    tenant            TEXT NOT NULL,
    api_name          TEXT NOT NULL,
    master_label      TEXT NOT NULL,
    definition_type   TEXT NOT NULL,
    is_active         INTEGER NOT NULL,
    parameters        TEXT NOT NULL,       -- JSON array of MessageParameter
    text_layout       TEXT NOT NULL,
    external_template TEXT,                -- JSON object or NULL
    created_ms        INTEGER NOT NULL,
    updated_ms        INTEGER NOT NULL,
    UNIQUE (tenant, api_name)
);

CREATE TABLE end_users (
    id             TEXT PRIMARY KEY NOT NULL,
    tenant         TEXT NOT NULL,
    channel_id     TEXT NOT NULL REFERENCES channels (id),
    platform_key   TEXT NOT NULL,
    name           TEXT NOT NULL,
    consent_status TEXT NOT NULL,
    created_ms     INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL,
    UNIQUE (tenant, channel_id, platform_key)
);

CREATE TABLE sessions (
    id          TEXT PRIMARY KEY NOT NULL,
    tenant      TEXT NOT NULL,
    end_user_id TEXT NOT NULL REFERENCES end_users (id),
    status      TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE INDEX sessions_by_end_user ON sessions (tenant, end_user_id, created_ms);

CREATE TABLE subscriptions (
    id             TEXT PRIMARY KEY NOT NULL,
    tenant         TEXT NOT NULL,
    developer_name TEXT NOT NULL,
    name           TEXT NOT NULL,
    channel_id     TEXT NOT NULL REFERENCES channels (id),
    is_active      INTEGER NOT NULL,
    created_ms     INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL,
    UNIQUE (tenant, developer_name)
);

CREATE TABLE subscription_consents (
    tenant          TEXT NOT NULL,
    subscription_id TEXT NOT NULL REFERENCES subscriptions (id),
    end_user_id     TEXT NOT NULL REFERENCES end_users (id),
    status          TEXT NOT NULL,
    updated_ms      INTEGER NOT NULL,
    PRIMARY KEY (subscription_id, end_user_id)
);

CREATE TABLE send_requests (
    id                     TEXT PRIMARY KEY NOT NULL,
    tenant                 TEXT NOT NULL,
    name                   TEXT NOT NULL,
    definition_name        TEXT NOT NULL,
    definition_id          TEXT NOT NULL,
    request_type           TEXT NOT NULL,
    enforce_consent        INTEGER NOT NULL,
    consent_type           TEXT NOT NULL,
    subscription_id        TEXT,
    allowed_session_status TEXT NOT NULL,
    status                 TEXT NOT NULL,
    parameters             TEXT NOT NULL,  -- Salesforce JSON form, sorted by name
    trace_context          TEXT,
    accepted_ms            INTEGER NOT NULL,
    updated_ms             INTEGER NOT NULL,
    completed_ms           INTEGER,
    -- Queue state: a Pending request is claimable once due_ms has passed; a claimed
    -- (InProgress) request is leased to locked_by until locked_until_ms.
    due_ms                 INTEGER NOT NULL,
    locked_by              TEXT,
    locked_until_ms        INTEGER,
    UNIQUE (tenant, name)
);
-- The FIFO queue: oldest accepted first, then id.
CREATE INDEX send_requests_queue ON send_requests (status, accepted_ms, id);

CREATE TABLE messages (
    identifier          TEXT PRIMARY KEY NOT NULL,
    tenant              TEXT NOT NULL,
    request_id          TEXT NOT NULL REFERENCES send_requests (id),
    position            INTEGER NOT NULL,
    end_user_id         TEXT NOT NULL,
    platform_key        TEXT NOT NULL,
    status              TEXT NOT NULL,
    reason              TEXT,
    waiting_reason      TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0,
    provider_message_id TEXT,
    next_attempt_ms     INTEGER,           -- NULL: due now
    waiting_since_ms    INTEGER,           -- set while held by session gating
    last_error          TEXT,              -- the last transient failure, for operators
    created_ms          INTEGER NOT NULL,
    updated_ms          INTEGER NOT NULL,
    UNIQUE (request_id, position)
);

CREATE INDEX messages_by_end_user ON messages (end_user_id, status);

CREATE TABLE idempotency_keys (
    tenant      TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    request_id  TEXT NOT NULL REFERENCES send_requests (id),
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
);
