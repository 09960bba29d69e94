-- What the daemon keeps beside the queues (the SQLite schema's migrations 0002-0007), on
-- PostgreSQL: tombstones and receivers (peek and explain), event source mappings created
-- through Lambda's API, message move tasks, asynchronous invocations, and the message count
-- of every queue (all_counts). Times are unix milliseconds from the application's clock.
-- Append new migrations; never edit this file once released.

-- What became of a message no longer stored, kept for storage.tombstone_retention.
-- Keyed by message (explain looks one up), with the time first in a second index (the sweep).
CREATE TABLE tombstones (
    queue_id          BIGINT NOT NULL REFERENCES queues (id) ON DELETE CASCADE,
    message_id        TEXT   NOT NULL,
    at                BIGINT NOT NULL,
    state             BIGINT NOT NULL,            -- 1 deleted, 2 filtered out, 3 expired, 4 dead-lettered
    receive_count     BIGINT NOT NULL,
    receipt           BIGINT,                     -- the token of its latest receive: who held it
    dead_letter_queue TEXT,                       -- state 4: where it went (a queue key)
    PRIMARY KEY (queue_id, message_id, at)
);

CREATE INDEX tombstones_at ON tombstones (at);

-- Receivers named in the low 16 bits of receipt tokens (0 is a client).
CREATE TABLE receivers (
    id   BIGINT PRIMARY KEY CHECK (id BETWEEN 1 AND 65535),
    name TEXT   NOT NULL UNIQUE
);

CREATE TABLE event_source_mappings (
    uuid                       TEXT    PRIMARY KEY,
    function                   TEXT    NOT NULL,
    queue                      TEXT    NOT NULL,   -- a queue key (the queue may be deleted later)
    enabled                    BOOLEAN NOT NULL,
    batch_size                 BIGINT  NOT NULL,
    batching_window_s          BIGINT  NOT NULL,
    max_concurrency            BIGINT,
    report_batch_item_failures BOOLEAN NOT NULL,
    filters                    TEXT    NOT NULL,   -- JSON array of pattern strings
    state                      TEXT    NOT NULL,
    version                    BIGINT  NOT NULL,   -- raised by every change through the API
    last_modified_at           BIGINT  NOT NULL,
    UNIQUE (function, queue)
);

-- A task is run by one instance at a time: the one whose lease (owner, lease_until) holds.
CREATE TABLE move_tasks (
    id               BIGSERIAL PRIMARY KEY,        -- start order
    task_id          TEXT    NOT NULL UNIQUE,
    source           TEXT    NOT NULL,             -- the source queue's key
    source_arn       TEXT    NOT NULL,
    destination      TEXT,                         -- NULL: each message's original source queue
    destination_arn  TEXT,
    max_per_second   BIGINT,
    status           TEXT    NOT NULL,             -- RUNNING, CANCELLING, COMPLETED, CANCELLED, FAILED
    to_move          BIGINT  NOT NULL,
    moved            BIGINT  NOT NULL DEFAULT 0,
    failure_reason   TEXT,
    started_at       BIGINT  NOT NULL,
    owner            TEXT,                         -- the instance running it
    lease_until      BIGINT  NOT NULL DEFAULT 0
);

CREATE INDEX move_tasks_source ON move_tasks (source, id);

-- An event is run by one instance at a time: the one whose lease (owner, lease_until) holds.
CREATE TABLE async_invocations (
    id              BIGSERIAL PRIMARY KEY,         -- arrival order
    request_id      TEXT    NOT NULL UNIQUE,
    function        TEXT    NOT NULL,
    payload         BYTEA   NOT NULL,
    client_context  TEXT,
    trace_id        TEXT,
    queued_at       BIGINT  NOT NULL,
    due_at          BIGINT  NOT NULL,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    owner           TEXT,
    lease_until     BIGINT  NOT NULL DEFAULT 0
);

CREATE INDEX async_invocations_due ON async_invocations (due_at, id);

-- Stored messages per queue, as deltas written by the transactions that insert or delete
-- messages, spread over a few shards so that concurrent writers of one queue seldom wait for
-- each other; a queue's count is the sum of its shards.
CREATE TABLE queue_counts (
    queue_id BIGINT NOT NULL REFERENCES queues (id) ON DELETE CASCADE,
    shard    BIGINT NOT NULL,
    total    BIGINT NOT NULL,
    PRIMARY KEY (queue_id, shard)
);

INSERT INTO queue_counts (queue_id, shard, total)
    SELECT queue_id, 0, COUNT(*) FROM messages GROUP BY queue_id;
