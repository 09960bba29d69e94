-- Queues are per region (docs/architecture.md, "Regions"): the same name in two regions is two
-- queues, so `name` is unique per region instead of alone. `region` is '' for the configured
-- default region (`server.region`, which a migration cannot know), else the region's name; every
-- queue created before this migration is the default region's.
--
-- SQLite cannot drop the column-level UNIQUE on `name`, so the table is rebuilt, keeping every
-- row and its id. Dropping the old table with foreign keys enforced would cascade-delete every
-- message, dedup entry and tombstone of every queue: esmd runs its migrations with foreign keys
-- off (src/store/open.rs, `migrate`), as SQLite's documented procedure for changing a table
-- requires. The other tables' `REFERENCES queues (id)` name the table by name, so they refer to
-- the rebuilt table once it is renamed, and every id is kept.

CREATE TABLE queues_by_region (
    id                    INTEGER PRIMARY KEY,
    region                TEXT    NOT NULL DEFAULT '',
    name                  TEXT    NOT NULL,
    fifo                  INTEGER NOT NULL,
    visibility_timeout_ms INTEGER NOT NULL,
    delay_ms              INTEGER NOT NULL,
    retention_ms          INTEGER NOT NULL,
    max_message_size      INTEGER NOT NULL,
    receive_wait_ms       INTEGER NOT NULL,
    dead_letter_queue     TEXT,                   -- a queue name of the same region
    max_receive_count     INTEGER,
    redrive_allow_policy  TEXT,
    content_based_dedup   INTEGER NOT NULL,
    dedup_scope           TEXT    NOT NULL,
    fifo_throughput_limit TEXT    NOT NULL,
    tags                  TEXT    NOT NULL DEFAULT '{}',
    created_at            INTEGER NOT NULL,
    last_modified_at      INTEGER NOT NULL,
    last_purge_at         INTEGER,
    last_sequence         INTEGER NOT NULL DEFAULT 0,
    UNIQUE (region, name)
) STRICT;

INSERT INTO queues_by_region (id, region, name, fifo, visibility_timeout_ms, delay_ms, retention_ms,
    max_message_size, receive_wait_ms, dead_letter_queue, max_receive_count, redrive_allow_policy,
    content_based_dedup, dedup_scope, fifo_throughput_limit, tags, created_at, last_modified_at,
    last_purge_at, last_sequence)
SELECT id, '', name, fifo, visibility_timeout_ms, delay_ms, retention_ms,
    max_message_size, receive_wait_ms, dead_letter_queue, max_receive_count, redrive_allow_policy,
    content_based_dedup, dedup_scope, fifo_throughput_limit, tags, created_at, last_modified_at,
    last_purge_at, last_sequence
FROM queues;

DROP TABLE queues;

ALTER TABLE queues_by_region RENAME TO queues;
