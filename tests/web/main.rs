//! The dashboard served by `serve` (`[web]`): the real server on loopback ports with a
//! seeded SQLite hit log, driven over raw HTTP/1.1.

#[path = "../support/mod.rs"]
mod support;

mod web;
