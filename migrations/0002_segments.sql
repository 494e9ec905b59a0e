-- Recorded segments: one row per closed file, times in UTC milliseconds.
CREATE TABLE segments (
    id       INTEGER PRIMARY KEY,
    camera   TEXT NOT NULL,
    path     TEXT NOT NULL UNIQUE,      -- relative to storage.recordings_dir
    start_ms INTEGER NOT NULL,
    end_ms   INTEGER NOT NULL,
    bytes    INTEGER NOT NULL,
    codec    TEXT,
    width    INTEGER,
    height   INTEGER,
    CHECK (end_ms >= start_ms)
) STRICT;

-- A camera's timeline (window queries), and all cameras oldest first (retention).
CREATE INDEX segments_by_camera ON segments (camera, start_ms);
CREATE INDEX segments_by_start ON segments (start_ms);

-- Running totals per camera, kept exact by triggers so nobody scans segments for them.
CREATE TABLE camera_totals (
    camera   TEXT PRIMARY KEY,
    bytes    INTEGER NOT NULL,
    segments INTEGER NOT NULL
) STRICT;

CREATE TRIGGER segments_total_insert AFTER INSERT ON segments BEGIN
    INSERT INTO camera_totals (camera, bytes, segments) VALUES (NEW.camera, NEW.bytes, 1)
    ON CONFLICT (camera) DO UPDATE SET bytes = bytes + NEW.bytes, segments = segments + 1;
END;

CREATE TRIGGER segments_total_delete AFTER DELETE ON segments BEGIN
    UPDATE camera_totals SET bytes = bytes - OLD.bytes, segments = segments - 1 WHERE camera = OLD.camera;
END;

CREATE TRIGGER segments_total_update AFTER UPDATE OF bytes, camera ON segments BEGIN
    UPDATE camera_totals SET bytes = bytes - OLD.bytes, segments = segments - 1 WHERE camera = OLD.camera;
    INSERT INTO camera_totals (camera, bytes, segments) VALUES (NEW.camera, NEW.bytes, 1)
    ON CONFLICT (camera) DO UPDATE SET bytes = bytes + NEW.bytes, segments = segments + 1;
END;

-- Holes in a camera's timeline, with why.
CREATE TABLE recording_gaps (
    id       INTEGER PRIMARY KEY,
    camera   TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms   INTEGER NOT NULL,
    reason   TEXT NOT NULL
) STRICT;

CREATE INDEX recording_gaps_by_camera ON recording_gaps (camera, start_ms);
