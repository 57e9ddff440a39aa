-- Version 4: the audit log of the household controls and the device edits: when, who made
-- the change (a dashboard session, the API token, the command line), what changed, and
-- the value before and after, as text.
CREATE TABLE audit (
    id    INTEGER PRIMARY KEY,
    ts    INTEGER NOT NULL,
    actor TEXT    NOT NULL,
    what  TEXT    NOT NULL,
    old   TEXT    NOT NULL,
    new   TEXT    NOT NULL
);
CREATE INDEX audit_ts ON audit (ts);
