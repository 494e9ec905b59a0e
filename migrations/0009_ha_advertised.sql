-- What Home Assistant discovery last advertised: one row per device config topic, so a
-- camera, zone or entity removed while the service was stopped is removed from Home
-- Assistant at the next start, and the retained states of a removed camera cleared after.
CREATE TABLE ha_advertised (
    topic      TEXT PRIMARY KEY,  -- the device's discovery config topic
    components TEXT NOT NULL,     -- JSON object: component id -> platform
    clears     TEXT NOT NULL      -- JSON list of retained state topics to clear after removal
) STRICT;
