-- The claim reads a standard queue's receivable rows in (visible_at, id) order within
-- in_flight (src/store/postgres/claim.rs); with id in the index neither part sorts.
DROP INDEX messages_claim;
CREATE INDEX messages_claim ON messages (queue_id, in_flight, visible_at, id);
