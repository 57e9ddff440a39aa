//! Abuse, access and reliability: hostile clients and upstreams, TCP abuse, faults around the
//! resolver, random input (proptest), and who is answered.

#[path = "../support/mod.rs"]
mod support;

mod abuse;
mod access;
mod faults;
mod properties;
mod tcp_abuse;
