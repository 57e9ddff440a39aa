//! DNS answering and forwarding: the resolver core, DNSSEC passthrough (in-process and through
//! NSD and delv), the wire format of answers, and encrypted upstreams.

#[path = "../support/mod.rs"]
mod support;

mod dnssec;
mod dnssec_delv;
mod resolver;
mod upstream_tls;
mod wire_format;
