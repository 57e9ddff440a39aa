//! metaguard: a local DNS resolver that blocks and logs Meta's tracking, per device.
//!
//! One query flows one way: listener (`server`) -> access (`access`) -> device
//! (`clients`) -> filter verdict (`filter`, `policy`) -> blocked answer, or cache
//! (`cache`) -> upstream (`upstream`) -> CNAME check -> answer; then the hit log
//! (`store`) and dnstap (`export`). The modules below are listed in that order, then
//! what loads the config and lists, then the commands. docs/architecture.md has the
//! stage-by-stage walk.
#![warn(missing_docs, unreachable_pub)]

// Tests only: counts the allocations of chosen threads.
#[cfg(test)]
mod alloc_count;

// Listeners, the snapshot of settings and lists, start/reload/stop, the decision per query.
pub mod server;

// Who may ask: the allowed client networks and the per-client rate limit.
pub mod access;

// Networks tested in a few instructions (allowed clients, exemptions, trusted forwarders,
// device networks).
pub(crate) mod netset;

// Which device sent a query: config devices, the EDNS MAC, neighbour tables, DHCP leases.
pub mod clients;

// The compiled lists: which rules match a name, and the verdict under a device's actions.
pub mod filter;

// Categories and the action of each, per device group.
pub mod policy;

// The names that tell a device to resolve elsewhere ([bypass]): answered here, or logged.
pub mod bypass;

// The answer cache, TTL-honouring, with negative answers.
pub mod cache;

// The upstream resolvers (plain, TCP, DoT, DoH) and fail-over between them.
pub mod upstream;

// The hit log: the event queue, the writer thread, and the reads of the commands.
pub mod store;

// The dnstap output to a Frame Streams collector.
pub mod export;

// The server's lock-free counters.
pub mod stats;

// The optional Prometheus endpoint.
pub(crate) mod metrics;

// At most one log line per period for a recurring event.
pub(crate) mod lograte;

// The TOML config, parsed and checked into settings.
pub mod config;

// Household controls from the dashboard and the CLI, laid over the config.
pub(crate) mod controls;

// Where the block lists come from: embedded, files, the config's own entries.
pub mod lists;

// Remote lists fetched over HTTP(S), with a last good copy on disk.
pub mod remote;

// The private CA every TLS client trusts, and the client configs made from it.
pub mod tls;

// Files written whole for others to read, with names made safe.
pub(crate) mod files;

// The verdict for given names, with the rule, list and line that decided it.
pub(crate) mod check;

// Weekly exposure reports: build, render, deliver.
pub mod report;

// The household dashboard served by `serve`: pages, JSON API, live feed, login.
pub mod web;

// The command line: clap definitions and one file per command.
pub mod cli;
