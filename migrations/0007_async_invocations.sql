-- Asynchronous invocations (Lambda's Invoke API with `X-Amz-Invocation-Type: Event`). An event is
-- inserted before the caller gets its 202 and deleted once its outcome is settled (sent to a
-- destination queue, or logged and dropped), so one still here at start is run again. `attempts`
-- is raised before each invocation, so an attempt cut short by a crash still counts.
-- Times are unix milliseconds from the application's clock. Append new migrations; never edit
-- this file once released.

CREATE TABLE async_invocations (
    id              INTEGER PRIMARY KEY,        -- arrival order
    request_id      TEXT    NOT NULL UNIQUE,    -- the Invoke API's x-amzn-RequestId
    function        TEXT    NOT NULL,           -- the configured function's name
    payload         BLOB    NOT NULL,           -- the event, as the caller sent it
    client_context  TEXT,                       -- X-Amz-Client-Context, decoded
    trace_id        TEXT,                       -- X-Amzn-Trace-Id
    queued_at       INTEGER NOT NULL,           -- when it was accepted (its age counts from here)
    due_at          INTEGER NOT NULL,           -- when it may run next
    attempts        INTEGER NOT NULL DEFAULT 0  -- invocations started so far
) STRICT;

CREATE INDEX async_invocations_due ON async_invocations (due_at, id);
