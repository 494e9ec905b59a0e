-- Segment files being deleted (Moonfire's rule): a row leaves `segments` and enters
-- `garbage` in one transaction, the file is unlinked and its directory synced, then the
-- garbage row goes. The index never points at a file that is gone, and a crash between
-- the steps leaves rows here that the next collection finishes.
CREATE TABLE garbage (
    path   TEXT PRIMARY KEY,     -- relative to storage.recordings_dir
    camera TEXT NOT NULL
) STRICT;
