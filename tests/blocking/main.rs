//! Blocking and lists: our list parsers against real lists and adblock, the precision of the
//! embedded Meta lists, and remote lists over HTTP(S).

#[path = "../support/mod.rs"]
mod support;

mod list_parsers;
mod precision;
mod remote;
