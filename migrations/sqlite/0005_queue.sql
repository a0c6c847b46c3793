-- The queue for throughput (every insert appends; claims read only what they take) and
-- maintained counts for the metrics.

-- A Pending request is ready (waiting = FALSE: claimable now, in accept order) or
-- delayed until due_ms (a retry, a session wait). Claims move delayed requests that came
-- due to the ready queue through an index on due_ms, so waiting requests cost nothing.
ALTER TABLE send_requests ADD COLUMN waiting INTEGER NOT NULL DEFAULT FALSE;
UPDATE send_requests SET waiting = TRUE WHERE status = 'Pending';
DROP INDEX send_requests_queue;
CREATE INDEX send_requests_ready ON send_requests (accepted_ms) WHERE status = 'Pending' AND waiting = FALSE;
CREATE INDEX send_requests_delayed ON send_requests (due_ms) WHERE status = 'Pending' AND waiting = TRUE;
-- Leased requests: the in-progress count, takeovers of expired leases.
CREATE INDEX send_requests_leased ON send_requests (locked_until_ms) WHERE status = 'InProgress';

-- Held messages alone: new messages never touch this index (the old one took every
-- insert at a random place, keyed by end user).
DROP INDEX messages_by_end_user;
CREATE INDEX messages_held ON messages (tenant, end_user_id, waiting_reason)
    WHERE status = 'Pending' AND waiting_reason IS NOT NULL;

-- An accept batch records its idempotency keys before its requests (see
-- store/sql/accept.rs), so the key's reference to its request is checked at commit.
CREATE TABLE idempotency_keys_new (
    tenant      TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    request_id  TEXT NOT NULL REFERENCES send_requests (id) DEFERRABLE INITIALLY DEFERRED,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
);
INSERT INTO idempotency_keys_new SELECT tenant, key, fingerprint, request_id, created_ms FROM idempotency_keys;
DROP TABLE idempotency_keys;
ALTER TABLE idempotency_keys_new RENAME TO idempotency_keys;
CREATE INDEX idempotency_keys_by_request ON idempotency_keys (request_id);

-- Requests by status, kept by every write that changes a status (store/sql/counts.rs),
-- one row set per writer (shard); recounted at start.
CREATE TABLE queue_counts (
    shard  INTEGER NOT NULL,
    status TEXT NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (shard, status)
) WITHOUT ROWID;
INSERT INTO queue_counts (shard, status, n) SELECT 0, status, COUNT(*) FROM send_requests GROUP BY status;
