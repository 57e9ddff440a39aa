-- Version 2: per-device hourly totals, daily rollups, the optional full query log and
-- the running server's status.

CREATE TABLE query_totals (
    device_id INTEGER NOT NULL,
    hour      INTEGER NOT NULL,  -- unix hour
    queries   INTEGER NOT NULL DEFAULT 0,
    meta      INTEGER NOT NULL DEFAULT 0,
    blocked   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, hour)
) WITHOUT ROWID;

CREATE TABLE daily_rollups (
    device_id   INTEGER NOT NULL,
    day         INTEGER NOT NULL,  -- unix day
    category_id INTEGER NOT NULL,
    action      INTEGER NOT NULL,
    hits        INTEGER NOT NULL,
    PRIMARY KEY (device_id, day, category_id, action)
) WITHOUT ROWID;

-- Only written when [store] log_all_queries = true.
CREATE TABLE queries (
    id            INTEGER PRIMARY KEY,
    ts            INTEGER NOT NULL,
    device_id     INTEGER NOT NULL,
    name_id       INTEGER NOT NULL,
    qtype         INTEGER NOT NULL,
    answered_from INTEGER NOT NULL  -- 0 upstream, 1 cache, 2 blocked, 3 error
);
CREATE INDEX queries_ts ON queries (ts);

CREATE TABLE server_status (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
