-- Message move tasks (StartMessageMoveTask: a dead-letter queue's redrive). One row per task;
-- the move itself commits each chunk of messages together with the task's `moved` count, so a
-- crash loses or repeats nothing, and a task still RUNNING or CANCELLING at start is resumed.
-- Times are unix milliseconds from the application's clock. Append new migrations; never edit
-- this file once released.

CREATE TABLE move_tasks (
    id               INTEGER PRIMARY KEY,        -- start order
    task_id          TEXT    NOT NULL UNIQUE,    -- a UUID, inside the TaskHandle
    source           TEXT    NOT NULL,           -- the source (dead-letter) queue's name
    source_arn       TEXT    NOT NULL,           -- as the client gave it
    destination      TEXT,                       -- NULL: each message's original source queue
    destination_arn  TEXT,                       -- as the client gave it
    max_per_second   INTEGER,                    -- MaxNumberOfMessagesPerSecond; NULL: unlimited
    status           TEXT    NOT NULL,           -- RUNNING, CANCELLING, COMPLETED, CANCELLED, FAILED
    to_move          INTEGER NOT NULL,           -- ApproximateNumberOfMessagesToMove, at the start
    moved            INTEGER NOT NULL DEFAULT 0, -- raised by the commit that moves the messages
    failure_reason   TEXT,
    started_at       INTEGER NOT NULL
) STRICT;

CREATE INDEX move_tasks_source ON move_tasks (source, id);
