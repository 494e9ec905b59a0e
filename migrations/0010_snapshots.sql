-- Scheduled snapshots ([[camera.snapshot_schedule]]): one row per JPEG, written
-- (file and directory synced) before its row. Deleted through `garbage` like
-- segments, under their absolute path there.
CREATE TABLE snapshots (
    id       INTEGER PRIMARY KEY,
    camera   TEXT NOT NULL,
    path     TEXT NOT NULL UNIQUE,   -- relative to node.data_dir: snapshots/<camera>/<day>/<HHMMSS>.jpg
    ts_ms    INTEGER NOT NULL,       -- when it was taken (UTC ms)
    bytes    INTEGER NOT NULL,
    width    INTEGER NOT NULL,
    height   INTEGER NOT NULL
) STRICT;

-- A camera's snapshots in time (export, retention).
CREATE INDEX snapshots_by_camera ON snapshots (camera, ts_ms);
