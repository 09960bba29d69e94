-- A mapping's invocation slots, shared by every instance on the database, so that
-- `max_concurrency` bounds the mapping's invocations across all instances together
-- (store/postgres/slots.rs). A slot is free when it has no holder or its lease has run out
-- (the holder died). Rows are added as a mapping asks for slots up to its max_concurrency.
CREATE TABLE mapping_slots (
    mapping    TEXT   NOT NULL,
    slot       BIGINT NOT NULL,
    holder     TEXT,
    expires_at BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (mapping, slot)
);
