-- esmd's schema on PostgreSQL (storage.backend = "postgres"): the queue tables of the SQLite
-- schema (migrations/*.sql), with the same columns and meanings so that the store's row
-- mapping is shared. Times are unix milliseconds bound from the application's clock; SQL never
-- reads the time itself. Append new migrations; never edit this file once released.

CREATE TABLE queues (
    id                    BIGSERIAL PRIMARY KEY,
    region                TEXT    NOT NULL DEFAULT '',
    name                  TEXT    NOT NULL,
    fifo                  BOOLEAN NOT NULL,
    visibility_timeout_ms BIGINT  NOT NULL,
    delay_ms              BIGINT  NOT NULL,
    retention_ms          BIGINT  NOT NULL,
    max_message_size      BIGINT  NOT NULL,
    receive_wait_ms       BIGINT  NOT NULL,
    dead_letter_queue     TEXT,
    max_receive_count     BIGINT,
    redrive_allow_policy  TEXT,
    content_based_dedup   BOOLEAN NOT NULL,
    dedup_scope           TEXT    NOT NULL,
    fifo_throughput_limit TEXT    NOT NULL,
    policy                TEXT,
    sse                   TEXT    NOT NULL DEFAULT 'sqs',
    kms_master_key_id     TEXT,
    kms_data_key_reuse_s  BIGINT  NOT NULL DEFAULT 300,
    dedup_applied         TEXT,
    tags                  TEXT    NOT NULL DEFAULT '{}',
    created_at            BIGINT  NOT NULL,
    last_modified_at      BIGINT  NOT NULL,
    last_purge_at         BIGINT,
    last_sequence         BIGINT  NOT NULL DEFAULT 0,
    UNIQUE (region, name)
);

-- One row per stored message, in every state:
--   visible:   visible_at <= now
--   in flight: visible_at >  now AND in_flight      (received; the lease is the lock)
--   delayed:   visible_at >  now AND NOT in_flight
-- A claim locks the rows it takes with FOR UPDATE SKIP LOCKED, so two instances never take
-- the same row; FIFO operations on a queue also hold its advisory lock (store/postgres).
CREATE TABLE messages (
    id                 BIGSERIAL PRIMARY KEY,       -- send order (FIFO order within a group)
    queue_id           BIGINT  NOT NULL REFERENCES queues (id) ON DELETE CASCADE,
    message_id         TEXT    NOT NULL,
    body               TEXT    NOT NULL,
    attributes         TEXT,                        -- JSON of the user attributes; NULL when none
    md5_of_body        TEXT    NOT NULL,
    md5_of_attributes  TEXT,
    trace_header       TEXT,
    group_id           TEXT,
    dedup_id           TEXT,
    sequence_number    TEXT,
    dead_letter_source TEXT,
    sent_at            BIGINT  NOT NULL,
    retain_from        BIGINT  NOT NULL,            -- retention counts from here
    visible_at         BIGINT  NOT NULL,
    in_flight          BOOLEAN NOT NULL DEFAULT FALSE,
    receive_count      BIGINT  NOT NULL DEFAULT 0,
    first_receive_at   BIGINT,
    received_at        BIGINT,
    receipt            BIGINT                       -- token of the latest receive
);

-- Standard receive (requeued messages first, then by visible_at) and the state counts.
CREATE INDEX messages_claim ON messages (queue_id, in_flight, visible_at);
-- FIFO group heads and runs.
CREATE INDEX messages_group ON messages (queue_id, group_id, id) WHERE group_id IS NOT NULL;
-- Retention sweep and the age of the oldest message.
CREATE INDEX messages_retention ON messages (queue_id, retain_from);

-- FIFO deduplication entries, kept for 5 minutes after each accepted send.
CREATE TABLE dedup (
    queue_id        BIGINT NOT NULL REFERENCES queues (id) ON DELETE CASCADE,
    scope           TEXT   NOT NULL,                -- '' for queue scope, else the group id
    dedup_id        TEXT   NOT NULL,
    message_id      TEXT   NOT NULL,
    sequence_number TEXT,
    expires_at      BIGINT NOT NULL,
    PRIMARY KEY (queue_id, scope, dedup_id)
);

CREATE INDEX dedup_expiry ON dedup (expires_at);
