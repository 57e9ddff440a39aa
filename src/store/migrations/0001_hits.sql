-- Version 1: devices, interned strings and the raw hit log.
-- Names, categories and rule texts are interned so a hit row is a handful of integers.

CREATE TABLE devices (
    id         INTEGER PRIMARY KEY,
    -- 'mac:aa:bb:cc:dd:ee:ff' when the MAC is known, else 'ip:192.168.1.5'.
    key        TEXT    NOT NULL UNIQUE,
    mac        TEXT    UNIQUE,
    name       TEXT,
    grp        TEXT,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
);

CREATE TABLE device_addrs (
    device_id INTEGER NOT NULL,
    addr      TEXT    NOT NULL,
    last_seen INTEGER NOT NULL,
    PRIMARY KEY (device_id, addr)
) WITHOUT ROWID;

CREATE TABLE names (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE categories (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE rules (
    id   INTEGER PRIMARY KEY,
    text TEXT NOT NULL UNIQUE
);

CREATE TABLE hits (
    id              INTEGER PRIMARY KEY,
    ts              INTEGER NOT NULL,  -- unix seconds
    device_id       INTEGER NOT NULL,
    name_id         INTEGER NOT NULL,
    qtype           INTEGER NOT NULL,
    category_id     INTEGER NOT NULL,
    action          INTEGER NOT NULL,  -- 0 log, 1 block, 2 allow
    rule_id         INTEGER,
    cname_origin_id INTEGER            -- names.id of the CNAME target that matched
);
CREATE INDEX hits_ts ON hits (ts);
CREATE INDEX hits_device_ts ON hits (device_id, ts);
