//! The shared harness of the integration tests: the loopback upstream, the real server
//! in-process ([`serve`]) and as the real binary ([`process`]), a DNS client over real
//! UDP and TCP, temporary state, third-party tools ([`tools`]), HTTP and TLS ([`http`],
//! [`pki`]). Each test binary (`tests/<feature>/main.rs`) declares it with
//! `#[path = "../support/mod.rs"] mod support;`.
// Each binary uses part of the harness.
#![allow(dead_code, unused_imports)]

mod client;
pub mod encrypted;
pub mod http;
pub mod pki;
pub mod process;
pub mod tools;
mod upstream;

pub use client::*;
pub use process::{BIN, free_port, stdout_ok, udp_socket_inodes};
pub use upstream::*;

use metaguard::config::Config;
use metaguard::server::Running;

/// One integer that `sql` selects from the SQLite database at `db` (the hit log).
pub fn count(db: &std::path::Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// A config for tests: listens on 127.0.0.1 port 0, forwards to `upstream` only.
pub fn config(upstream: &Upstream) -> Config {
    let mut c = Config::default();
    c.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    c.upstream.servers = vec![upstream.spec().parse().unwrap()];
    c.upstream.resolv_conf = "/nonexistent/resolv.conf".into();
    c.filter.lists_dir = "/nonexistent/metaguard-lists".into();
    c.server.rate_limit.qps = 0;
    c.store.db = upstream.dir.path().join("metaguard.db");
    c.clients.neighbours = false;
    c.clients.leases = Vec::new();
    // The dashboard has its own tests (tests/web/), on a port of their own.
    c.web.enabled = false;
    c
}

/// Start the real server with `config`.
pub async fn serve(config: Config) -> Running {
    metaguard::server::start(config)
        .await
        .expect("server starts")
}
