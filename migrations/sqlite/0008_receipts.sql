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
