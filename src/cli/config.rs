//! `metaguard config check`: the effective config, or its errors with file:line:column.

use std::path::Path;

use crate::config::Config;

/// Print the effective config (exit code 0), or each error on its own line (1).
pub(crate) fn check(path: Option<&Path>) -> i32 {
    let result = match path {
        Some(p) => Config::load(p),
        None => Config::locate(None).map(|(c, _)| c),
    };
    match result {
        Ok(c) => {
            print!("{}", c.to_toml());
            0
        }
        Err(e) => {
            // One line a problem, each with its file:line:column.
            for line in e.to_string().lines() {
                eprintln!("error: {line}");
            }
            1
        }
    }
}
