-- esmd's schema. Times are unix milliseconds bound from the application's clock; SQL never
-- reads the time itself. Append new migrations; never edit this file once released.

CREATE TABLE queues (
    id                    INTEGER PRIMARY KEY,
    name                  TEXT    NOT NULL UNIQUE,
    fifo                  INTEGER NOT NULL,
    visibility_timeout_ms INTEGER NOT NULL,
    delay_ms              INTEGER NOT NULL,
    retention_ms          INTEGER NOT NULL,
    max_message_size      INTEGER NOT NULL,
    receive_wait_ms       INTEGER NOT NULL,
    dead_letter_queue     TEXT,
    max_receive_count     INTEGER,
    redrive_allow_policy  TEXT,
    content_based_dedup   INTEGER NOT NULL,
    dedup_scope           TEXT    NOT NULL,
    fifo_throughput_limit TEXT    NOT NULL,
    tags                  TEXT    NOT NULL DEFAULT '{}',
    created_at            INTEGER NOT NULL,
    last_modified_at      INTEGER NOT NULL,
    last_purge_at         INTEGER,
    last_sequence         INTEGER NOT NULL DEFAULT 0
) STRICT;

-- One row per stored message, in every state:
--   visible:   visible_at <= now
--   in flight: visible_at >  now AND in_flight = 1   (received; the lease is the lock)
--   delayed:   visible_at >  now AND in_flight = 0
CREATE TABLE messages (
    id                 INTEGER PRIMARY KEY,         -- send order (FIFO order within a group)
    queue_id           INTEGER NOT NULL REFERENCES queues (id) ON DELETE CASCADE,
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
    sent_at            INTEGER NOT NULL,
    retain_from        INTEGER NOT NULL,            -- retention counts from here
    visible_at         INTEGER NOT NULL,
    in_flight          INTEGER NOT NULL DEFAULT 0,
    receive_count      INTEGER NOT NULL DEFAULT 0,
    first_receive_at   INTEGER,
    received_at        INTEGER,
    receipt            INTEGER,                     -- token of the latest receive
    is_head            INTEGER NOT NULL DEFAULT 0   -- FIFO: the oldest stored message of its group
) STRICT;

-- Standard receive: the first visible rows by visible_at; also covers the state counts.
CREATE INDEX messages_claim ON messages (queue_id, visible_at, in_flight);
-- FIFO receive: a group is available exactly when its head is visible.
CREATE INDEX messages_fifo_heads ON messages (queue_id, visible_at) WHERE is_head = 1;
-- FIFO group prefix and head maintenance.
CREATE INDEX messages_group ON messages (queue_id, group_id, id) WHERE group_id IS NOT NULL;
-- Retention sweep and the age of the oldest message.
CREATE INDEX messages_retention ON messages (queue_id, retain_from);

-- FIFO deduplication entries, kept for 5 minutes after each accepted send.
CREATE TABLE dedup (
    queue_id        INTEGER NOT NULL REFERENCES queues (id) ON DELETE CASCADE,
    scope           TEXT    NOT NULL,               -- '' for queue scope, else the group id
    dedup_id        TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    sequence_number TEXT,
    expires_at      INTEGER NOT NULL,
    PRIMARY KEY (queue_id, scope, dedup_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX dedup_expiry ON dedup (expires_at);
