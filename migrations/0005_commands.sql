-- Commands: nonces already used (a replay is refused, also after a restart),
-- the audit trail of accepted commands that changed something, and recording
-- mode overrides (they survive a restart until they expire).
CREATE TABLE command_nonces (
    key         TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    ts_ms       INTEGER NOT NULL,       -- the request's auth.ts
    PRIMARY KEY (key, nonce)
) STRICT, WITHOUT ROWID;

CREATE INDEX command_nonces_by_ts ON command_nonces (ts_ms);

CREATE TABLE command_audit (
    id          INTEGER PRIMARY KEY,
    ts_ms       INTEGER NOT NULL,
    key         TEXT,                   -- NULL with auth = "none"
    command     TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    args_sha256 TEXT NOT NULL,          -- of args as sent
    ok          INTEGER NOT NULL,
    result      TEXT NOT NULL           -- "ok" or the error code and message
) STRICT;

CREATE TABLE record_overrides (
    camera      TEXT PRIMARY KEY,
    mode        TEXT NOT NULL,          -- continuous | events | off
    set_ms      INTEGER NOT NULL,
    until_ms    INTEGER                 -- NULL: until the next record command
) STRICT;

-- Windows in which a camera was forced to record continuously: retention of
-- an `events` camera keeps them for retain_days like continuous footage.
CREATE TABLE record_windows (
    camera      TEXT NOT NULL,
    from_ms     INTEGER NOT NULL,
    to_ms       INTEGER NOT NULL
) STRICT;

CREATE INDEX record_windows_by_camera ON record_windows (camera, to_ms);
