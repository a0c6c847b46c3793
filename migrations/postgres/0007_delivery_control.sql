-- Delivery control (issue 14): priority lanes, send later, cancel.

-- The lane a request waits in: 0 = transactional, 1 = bulk. The ready queue is keyed by
-- lane first, so a claim reads the head of each lane with an index range scan.
ALTER TABLE send_requests ADD COLUMN lane BIGINT NOT NULL DEFAULT 0;
-- When the caller asked for it to be sent (NULL: at once). Until then it is delayed
-- (waiting = TRUE, due_ms = send_at_ms), so scheduled requests cost nothing to claims.
ALTER TABLE send_requests ADD COLUMN send_at_ms BIGINT;
-- When CancelRequest was acknowledged (NULL: never).
ALTER TABLE send_requests ADD COLUMN canceled_ms BIGINT;
DROP INDEX send_requests_ready;
CREATE INDEX send_requests_ready ON send_requests (lane, accepted_ms, seq) WHERE status = 'Pending' AND waiting = FALSE;

-- The lane policy's memory across claims (store/sql/queue.rs, domain/schedule.rs): how
-- many transactional requests were claimed since the last bulk one. One row, updated
-- only under the claim lock.
CREATE TABLE queue_lanes (
    id                   BIGINT PRIMARY KEY,
    transactional_streak BIGINT NOT NULL
);
INSERT INTO queue_lanes (id, transactional_streak) VALUES (0, 0);

-- Redrive (RetryFailedMessages by channel and time window): the messages that failed
-- for a transient reason, by tenant and failure time; no other message enters it.
CREATE INDEX messages_redrivable ON messages (tenant, updated_ms) WHERE status = 'Failed' AND reason = 'RetriesExhausted';

-- Per-channel rate limits shared by every replica (domain/rates.rs, store/sql/rates.rs):
-- each channel's theoretical arrival time (GCRA), updated under its row lock when a
-- replica takes send slots. SQLite serves one process, which keeps the same state in
-- memory; the table exists on both so that the schemas agree.
CREATE TABLE channel_slots (
    channel_id TEXT PRIMARY KEY,
    tat_ms     DOUBLE PRECISION
);

-- Records the config file declared (server/provision.rs), so that `provisioning.prune`
-- removes those it no longer lists — and never a record made through the API.
CREATE TABLE declared_records (
    kind   TEXT NOT NULL,   -- channel | definition | end_user
    tenant TEXT NOT NULL,
    id     TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
