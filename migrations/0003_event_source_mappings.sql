-- Event source mappings created through Lambda's API (CreateEventSourceMapping). Mappings of the
-- configuration file are not stored here: the file is their truth. Times are unix milliseconds
-- from the application's clock. Append new migrations; never edit this file once released.

CREATE TABLE event_source_mappings (
    uuid                       TEXT    PRIMARY KEY,
    function                   TEXT    NOT NULL,   -- a key of [functions]
    queue                      TEXT    NOT NULL,   -- a queue name (the queue may be deleted later)
    enabled                    INTEGER NOT NULL,
    batch_size                 INTEGER NOT NULL,
    batching_window_s          INTEGER NOT NULL,
    max_concurrency            INTEGER,            -- ScalingConfig.MaximumConcurrency; NULL: unset
    report_batch_item_failures INTEGER NOT NULL,
    filters                    TEXT    NOT NULL,   -- JSON array of pattern strings
    state                      TEXT    NOT NULL,   -- Creating, Enabled, Disabled, Updating...
    version                    INTEGER NOT NULL,   -- raised by every change through the API
    last_modified_at           INTEGER NOT NULL,
    UNIQUE (function, queue)
) STRICT;
