-- What Home Assistant discovery last advertised: one row per discovery config topic, so a
-- camera or zone removed while the service was stopped is removed from Home Assistant
-- (an empty retained config) at the next start, and its retained states cleared.
CREATE TABLE ha_advertised (
    topic TEXT PRIMARY KEY,       -- the discovery config topic
    clears TEXT NOT NULL          -- JSON list of retained state topics to clear after removal
) STRICT;
