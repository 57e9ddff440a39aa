//! Blocking and lists: our list parsers against real lists and adblock, the precision of the
//! embedded Meta lists, remote lists over HTTP(S), CNAME uncloaking by the embedded lists, and
//! the `[bypass]` answers and their evidence in the report.

#[path = "../support/mod.rs"]
mod support;

mod bypass;
mod compact;
mod list_parsers;
mod precision;
mod remote;
mod uncloak;
