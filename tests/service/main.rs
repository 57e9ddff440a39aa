//! Running as a service and past one house: the systemd notify protocol, `/metrics` for
//! Prometheus and Grafana, and the dnstap export.

#[path = "../support/mod.rs"]
mod support;

mod dnstap;
mod metrics;
mod service;
mod workers;
