-- Node-wide counters that must survive restarts.
CREATE TABLE node_state (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;

INSERT INTO node_state (key, value) VALUES ('event_seq', 0), ('outbox_dropped', 0);

-- The durable outbox: every event is written here before it is published,
-- and marked sent only when the broker acknowledged it (QoS 1 PUBACK).
CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY,   -- node-wide event sequence, contiguous
    id         TEXT NOT NULL UNIQUE,  -- unique event id
    camera     TEXT NOT NULL,         -- topic level: a camera id or '_node'
    type       TEXT NOT NULL,
    payload    TEXT NOT NULL,         -- the JSON published
    created_ms INTEGER NOT NULL,
    sent_ms    INTEGER                -- NULL until acknowledged
) STRICT;

CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_ms IS NULL;
