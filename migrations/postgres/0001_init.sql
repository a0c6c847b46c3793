-- convmsg schema (PostgreSQL). Times are Unix milliseconds (UTC) as BIGINT, so the
-- Rust row types are the same as on SQLite. Every row carries its tenant.

CREATE TABLE tokens (
    token_sha256 TEXT PRIMARY KEY,
    tenant       TEXT NOT NULL,
    scopes       TEXT NOT NULL,            -- comma-separated: send,read,admin
    label        TEXT NOT NULL DEFAULT '',
    created_ms   BIGINT NOT NULL
);

-- Per-tenant sequence behind request names (MSJ-00000001); bumped with
-- INSERT … ON CONFLICT … DO UPDATE … RETURNING, which row-locks it until commit,
-- so names are unique and gap-free across replicas.
CREATE TABLE tenant_sequences (
    tenant     TEXT PRIMARY KEY,
    last_value BIGINT NOT NULL
);

CREATE TABLE channels (
    id                    TEXT PRIMARY KEY,
    tenant                TEXT NOT NULL,
    developer_name        TEXT NOT NULL,
    master_label          TEXT NOT NULL,
    message_type          TEXT NOT NULL,
    consent_type          TEXT NOT NULL,
    provider              TEXT NOT NULL,
    platform_key          TEXT NOT NULL,
    is_active             BOOLEAN NOT NULL,
    rate_limit_per_second DOUBLE PRECISION NOT NULL,
    provider_options      TEXT NOT NULL,   -- JSON object
    created_ms            BIGINT NOT NULL,
    updated_ms            BIGINT NOT NULL,
    UNIQUE (tenant, developer_name)
);

CREATE TABLE message_definitions (
    id                TEXT PRIMARY KEY,
    tenant            TEXT NOT NULL,
    api_name          TEXT NOT NULL,
    master_label      TEXT NOT NULL,
    definition_type   TEXT NOT NULL,
    is_active         BOOLEAN NOT NULL,
    parameters        TEXT NOT NULL,       -- JSON array of MessageParameter
    text_layout       TEXT NOT NULL,
    external_template TEXT,                -- JSON object or NULL
    created_ms        BIGINT NOT NULL,
    updated_ms        BIGINT NOT NULL,
    UNIQUE (tenant, api_name)
);

CREATE TABLE end_users (
    id             TEXT PRIMARY KEY,
    tenant         TEXT NOT NULL,
    channel_id     TEXT NOT NULL REFERENCES channels (id),
    platform_key   TEXT NOT NULL,
    name           TEXT NOT NULL,
    consent_status TEXT NOT NULL,
    created_ms     BIGINT NOT NULL,
    updated_ms     BIGINT NOT NULL,
    UNIQUE (tenant, channel_id, platform_key)
);

CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    -- Insertion order, to break ties between sessions created in the same millisecond
    -- (SQLite uses its rowid for this).
    seq         BIGINT GENERATED ALWAYS AS IDENTITY,
    tenant      TEXT NOT NULL,
    end_user_id TEXT NOT NULL REFERENCES end_users (id),
    status      TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);
CREATE INDEX sessions_by_end_user ON sessions (tenant, end_user_id, created_ms);

CREATE TABLE subscriptions (
    id             TEXT PRIMARY KEY,
    tenant         TEXT NOT NULL,
    developer_name TEXT NOT NULL,
    name           TEXT NOT NULL,
    channel_id     TEXT NOT NULL REFERENCES channels (id),
    is_active      BOOLEAN NOT NULL,
    created_ms     BIGINT NOT NULL,
    updated_ms     BIGINT NOT NULL,
    UNIQUE (tenant, developer_name)
);

CREATE TABLE subscription_consents (
    tenant          TEXT NOT NULL,
    subscription_id TEXT NOT NULL REFERENCES subscriptions (id),
    end_user_id     TEXT NOT NULL REFERENCES end_users (id),
    status          TEXT NOT NULL,
    updated_ms      BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, end_user_id)
);

CREATE TABLE send_requests (
    id                     TEXT PRIMARY KEY,
    -- Insertion order: FIFO among requests accepted in the same millisecond (SQLite
    -- uses its rowid for this).
    seq                    BIGINT GENERATED ALWAYS AS IDENTITY,
    tenant                 TEXT NOT NULL,
    name                   TEXT NOT NULL,
    definition_name        TEXT NOT NULL,
    definition_id          TEXT NOT NULL,
    request_type           TEXT NOT NULL,
    enforce_consent        BOOLEAN NOT NULL,
    consent_type           TEXT NOT NULL,
    subscription_id        TEXT,
    allowed_session_status TEXT NOT NULL,
    status                 TEXT NOT NULL,
    parameters             TEXT NOT NULL,  -- Salesforce JSON form, sorted by name
    trace_context          TEXT,
    accepted_ms            BIGINT NOT NULL,
    updated_ms             BIGINT NOT NULL,
    completed_ms           BIGINT,
    -- Queue state: a Pending request is claimable once due_ms has passed; a claimed
    -- (InProgress) request is leased to locked_by until locked_until_ms.
    due_ms                 BIGINT NOT NULL,
    locked_by              TEXT,
    locked_until_ms        BIGINT,
    UNIQUE (tenant, name)
);
-- The FIFO queue: oldest accepted first, then in insertion order.
CREATE INDEX send_requests_queue ON send_requests (status, accepted_ms, seq);
-- Retention: completed requests by age.
CREATE INDEX send_requests_completed ON send_requests (completed_ms) WHERE status = 'Completed';

CREATE TABLE messages (
    identifier          TEXT PRIMARY KEY,
    tenant              TEXT NOT NULL,
    request_id          TEXT NOT NULL REFERENCES send_requests (id),
    position            BIGINT NOT NULL,
    end_user_id         TEXT NOT NULL,
    platform_key        TEXT NOT NULL,
    status              TEXT NOT NULL,
    reason              TEXT,
    waiting_reason      TEXT,
    attempts            BIGINT NOT NULL DEFAULT 0,
    provider_message_id TEXT,
    next_attempt_ms     BIGINT,            -- NULL: due now
    waiting_since_ms    BIGINT,            -- set while held by session gating
    last_error          TEXT,              -- the last transient failure, for operators
    sent_by             TEXT,              -- lease owner (replica) of the last attempt
    created_ms          BIGINT NOT NULL,
    updated_ms          BIGINT NOT NULL,
    UNIQUE (request_id, position)
);

CREATE INDEX messages_by_end_user ON messages (end_user_id, status);

CREATE TABLE idempotency_keys (
    tenant      TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    request_id  TEXT NOT NULL REFERENCES send_requests (id),
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE INDEX idempotency_keys_by_request ON idempotency_keys (request_id);
