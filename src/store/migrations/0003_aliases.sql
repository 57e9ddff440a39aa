-- Version 3: keys of devices merged into another one (`metaguard devices merge KEEP OTHER`): the
-- writer counts a hit under such a key for the device it names, never re-creating the
-- merged row.
CREATE TABLE device_aliases (
    key       TEXT    PRIMARY KEY,
    device_id INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX device_aliases_device ON device_aliases (device_id);
