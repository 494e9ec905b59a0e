-- Backup jobs, and what each destination already holds.
CREATE TABLE backup_jobs (
    id          INTEGER PRIMARY KEY,
    policy      TEXT NOT NULL,
    destination TEXT NOT NULL,
    status      TEXT NOT NULL,          -- running | done | failed | interrupted
    started_ms  INTEGER NOT NULL,
    ended_ms    INTEGER,
    files_total INTEGER NOT NULL DEFAULT 0,
    files_done  INTEGER NOT NULL DEFAULT 0,
    bytes_total INTEGER NOT NULL DEFAULT 0,
    bytes_done  INTEGER NOT NULL DEFAULT 0,
    error       TEXT
) STRICT;

CREATE INDEX backup_jobs_by_policy ON backup_jobs (policy, started_ms);

CREATE TABLE backup_manifest (
    destination TEXT NOT NULL,
    path        TEXT NOT NULL,          -- relative: <camera>/<YYYY-MM-DD>/<file>
    bytes       INTEGER NOT NULL,
    sha256      TEXT,
    copied_ms   INTEGER NOT NULL,
    PRIMARY KEY (destination, path)
) STRICT, WITHOUT ROWID;
