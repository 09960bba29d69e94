-- Tombstones and receivers, for peek and explain (docs/architecture.md §2, "Peek and explain").

-- What became of a message that is no longer stored: deleted (by a consumer or a mapping),
-- filtered out by a mapping, expired, or moved to a dead-letter queue. Kept for
-- `storage.tombstone_retention`, then swept. Keyed by time first, so a delete appends at the end
-- and the sweep removes a range from the front; there is no index on `message_id` (it would cost
-- every delete a random b-tree insert): explain reads the tombstones of the retention window.
CREATE TABLE tombstones (
    at                INTEGER NOT NULL,
    queue_id          INTEGER NOT NULL REFERENCES queues (id) ON DELETE CASCADE,
    message_id        TEXT    NOT NULL,
    state             INTEGER NOT NULL,           -- 1 deleted, 2 filtered out, 3 expired, 4 dead-lettered
    receive_count     INTEGER NOT NULL,
    receipt           INTEGER,                    -- the token of its latest receive: who held it
    dead_letter_queue TEXT,                       -- state 4: where it went
    PRIMARY KEY (at, queue_id, message_id)
) STRICT, WITHOUT ROWID;

-- Who receives: a mapping's name for a small number carried in the low bits of each receive's
-- token (`messages.receipt`), so that an in-flight message says which mapping holds it without
-- a column a receive would have to grow. 0 is an SQS or REST client and is not stored.
CREATE TABLE receivers (
    id   INTEGER PRIMARY KEY CHECK (id BETWEEN 1 AND 65535),
    name TEXT    NOT NULL UNIQUE
) STRICT;
