-- Evidence locks: footage of a camera between from_ms and to_ms that retention
-- and `events` recording mode must keep.
CREATE TABLE evidence_locks (
    id         INTEGER PRIMARY KEY,
    camera     TEXT NOT NULL,
    from_ms    INTEGER NOT NULL,
    to_ms      INTEGER NOT NULL,
    event_id   TEXT,                 -- the event that caused it; NULL for a lock by command
    reason     TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    CHECK (to_ms >= from_ms)
) STRICT;

CREATE INDEX evidence_locks_by_camera ON evidence_locks (camera, to_ms);
