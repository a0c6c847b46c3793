-- The lease owner (replica) of a message's last attempt, for operators; and indexes
-- for purging completed requests by age.
ALTER TABLE messages ADD COLUMN sent_by TEXT;
CREATE INDEX send_requests_completed ON send_requests (completed_ms) WHERE status = 'Completed';
CREATE INDEX idempotency_keys_by_request ON idempotency_keys (request_id);
