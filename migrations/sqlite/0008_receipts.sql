-- Delivery receipts (issue 13): what the provider reported after accepting a message.
-- status keeps Salesforce's meaning (Success = the provider accepted it); delivery_state
-- is the story after that: NULL until sent, then Sent, Delivered, Read or Undelivered,
-- only ever moving forward (domain/receipt.rs). Each *_ms is when that step was first
-- reported; delivery_error_code is the provider's code for Undelivered.
ALTER TABLE messages ADD COLUMN delivery_state TEXT;
ALTER TABLE messages ADD COLUMN sent_ms INTEGER;
ALTER TABLE messages ADD COLUMN delivered_ms INTEGER;
ALTER TABLE messages ADD COLUMN read_ms INTEGER;
ALTER TABLE messages ADD COLUMN undelivered_ms INTEGER;
ALTER TABLE messages ADD COLUMN delivery_error_code TEXT;
-- Receipts find their message by the provider's id, within the tenant.
CREATE INDEX messages_by_provider_id ON messages (tenant, provider_message_id)
    WHERE provider_message_id IS NOT NULL;

-- Status events out (issue 13.3). A tenant's event endpoints: where its events go and
-- the Standard Webhooks key they are signed with. event_types is empty (every type) or
-- the types joined and wrapped in commas (',message.read,request.completed,').
CREATE TABLE event_endpoints (
    id               TEXT PRIMARY KEY NOT NULL,
    tenant           TEXT NOT NULL,
    name             TEXT NOT NULL,
    url              TEXT NOT NULL,
    secret           TEXT NOT NULL,
    event_types      TEXT NOT NULL,
    enabled          INTEGER NOT NULL,
    disabled_reason  TEXT,
    failing_since_ms INTEGER,              -- the first failure of the current run of failures
    created_ms       INTEGER NOT NULL,
    updated_ms       INTEGER NOT NULL,
    UNIQUE (tenant, name)
);

-- The outbox: one row per event, written in the transaction of the state change it
-- reports (only for tenants with an endpoint), so an event is never lost nor sent for
-- a change that did not commit. id is the webhook-id.
CREATE TABLE event_outbox (
    id          TEXT PRIMARY KEY NOT NULL,
    tenant      TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    data        TEXT NOT NULL,          -- the event's data object, JSON
    created_ms  INTEGER NOT NULL
);
CREATE INDEX event_outbox_by_tenant ON event_outbox (tenant, created_ms);
-- The retention purge removes a request's events with it.
CREATE INDEX event_outbox_by_request ON event_outbox (request_id);

-- One row per event and endpoint, written with the event (for the endpoints enabled
-- then) or by a replay: Pending until delivered, or Failed when retries ran out.
CREATE TABLE event_deliveries (
    event_id        TEXT NOT NULL REFERENCES event_outbox (id) ON DELETE CASCADE,
    endpoint_id     TEXT NOT NULL REFERENCES event_endpoints (id) ON DELETE CASCADE,
    request_id      TEXT NOT NULL,
    event_seq       INTEGER NOT NULL,      -- the event's place in the outbox, for per-request order
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    locked_until_ms INTEGER,
    last_error      TEXT,
    updated_ms      INTEGER NOT NULL,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX event_deliveries_due ON event_deliveries (next_attempt_ms) WHERE status = 'Pending';
CREATE INDEX event_deliveries_by_request ON event_deliveries (endpoint_id, request_id, event_seq)
    WHERE status = 'Pending';
CREATE INDEX event_deliveries_by_request_id ON event_deliveries (request_id);
