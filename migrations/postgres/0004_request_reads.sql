-- Reads over many requests (issue 12): SOQL queries, gRPC ListRequests and the replication
-- resources. Every index leads with the tenant, because every read is scoped to one.
-- Text keys use the "C" collation, as the queries do, so that text sorts and compares
-- byte-wise exactly as on SQLite whatever the database's default collation is.

-- CreatedDate filters and the default order (CreatedDate, Id), which pages resume on.
CREATE INDEX send_requests_by_created ON send_requests (tenant, accepted_ms, id COLLATE "C");
-- LastModifiedDate / SystemModstamp filters, sObject Get Updated and recent items.
CREATE INDEX send_requests_by_modified ON send_requests (tenant, updated_ms, id COLLATE "C");
-- CompletedDate filters and sorts.
CREATE INDEX send_requests_by_completed ON send_requests (tenant, completed_ms, id COLLATE "C");
-- RequestStatus filters, in creation order.
CREATE INDEX send_requests_by_status ON send_requests (tenant, status, accepted_ms, id COLLATE "C");
-- MessageDefinition filters (compared case-insensitively), in creation order.
CREATE INDEX send_requests_by_definition
    ON send_requests (tenant, (upper(definition_name) COLLATE "C"), accepted_ms, id COLLATE "C");
-- ORDER BY Id and Id ranges (chunking by Id).
CREATE INDEX send_requests_by_id ON send_requests (tenant, id COLLATE "C");

-- sObject Get Deleted: one tombstone per deleted request, written by the trigger below
-- whatever deletes the row (today only the retention purge). deleted_ms is NULL until
-- the retention task stamps it with its clock right after purging (the trigger cannot
-- read convmsg's injected clock); tombstones are kept 15 days, as Salesforce keeps its
-- delete log.
CREATE TABLE send_request_tombstones (
    id         TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    deleted_ms BIGINT
);
CREATE INDEX send_request_tombstones_by_tenant ON send_request_tombstones (tenant, deleted_ms, id COLLATE "C");
CREATE INDEX send_request_tombstones_by_age ON send_request_tombstones (deleted_ms);

CREATE FUNCTION record_send_request_tombstone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO send_request_tombstones (id, tenant, deleted_ms) VALUES (OLD.id, OLD.tenant, NULL)
        ON CONFLICT (id) DO UPDATE SET deleted_ms = NULL;
    RETURN NULL;
END
$$;

CREATE TRIGGER send_requests_tombstone AFTER DELETE ON send_requests
    FOR EACH ROW EXECUTE FUNCTION record_send_request_tombstone();
