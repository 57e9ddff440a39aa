//! metaguard: a local DNS resolver that blocks and logs Meta's tracking, per device.
//!
//! One query flows one way: listener (`server`) -> access (`access`) -> filter verdict
//! (`filter`, `policy`) -> blocked answer, or cache (`cache`) -> upstream (`upstream`)
//! -> CNAME check -> answer.

pub mod access;
pub mod bypass;
pub mod cache;
pub mod check;
pub mod cli;
pub mod clients;
pub mod config;
pub mod export;
pub mod files;
pub mod filter;
pub mod lists;
pub mod lograte;
pub mod metrics;
pub mod policy;
pub mod remote;
pub mod report;
pub mod server;
pub mod stats;
pub mod store;
pub mod tls;
pub mod upstream;
