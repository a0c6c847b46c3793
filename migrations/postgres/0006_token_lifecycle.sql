-- Token lifecycle (issue 16.5): where each token came from, so a start removes the
-- config's tokens it no longer lists, a rotated bootstrap token and the generated one;
-- an optional expiry; and revocation, kept as a mark so that a token revoked through
-- the API is not granted again by the config file that still lists it.
ALTER TABLE tokens ADD COLUMN source TEXT NOT NULL DEFAULT 'config';   -- config | bootstrap | generated
ALTER TABLE tokens ADD COLUMN expires_ms BIGINT;
ALTER TABLE tokens ADD COLUMN revoked_ms BIGINT;
UPDATE tokens SET source = 'bootstrap' WHERE label = 'bootstrap';
UPDATE tokens SET source = 'generated' WHERE label = 'generated bootstrap';
CREATE INDEX tokens_by_tenant ON tokens (tenant);
