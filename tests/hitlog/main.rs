//! Devices and the hit log: who asked what, written to SQLite end to end, and the log through
//! an outage (locks, a full disk, a read-only file system).

#[path = "../support/mod.rs"]
mod support;

mod hitlog;
mod hitlog_outage;
mod lan;
mod lan_dhcp;
