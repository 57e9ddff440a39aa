//! Fuzz target: `Config::parse` on arbitrary text; an error must name a line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use metaguard::config::{Config, ConfigError};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Config::parse(&text, std::path::Path::new("fuzz.toml")) {
        Ok(c) => {
            let _ = c.to_toml();
        }
        Err(ConfigError::Invalid { line, column, .. }) => assert!(line >= 1 && column >= 1),
        Err(_) => {}
    }
});
