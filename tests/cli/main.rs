//! The command line and config: the binary as a user runs it, the shipped config files, and
//! each shipped config booted and answering.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod config_file;
mod controls;
mod shipped_configs;
