//! What the binary writes on stderr: the log lines (tracing, for a terminal or for the
//! journal) and the one line of a command's error.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Send tracing to stderr. INFO for our own start/reload/shutdown lines; hickory logs
/// every query at INFO, so it is held to WARN. RUST_LOG takes `level` and
/// `target=level` directives (e.g. `metaguard=debug`); a `Targets` filter reads them
/// without the regex engine `EnvFilter` would link in.
pub fn init_tracing() {
    let default: Targets =
        "info,hickory_server=warn,hickory_net=warn,hickory_resolver=warn,hickory_proto=warn"
            .parse()
            .expect("the built-in log filter parses");
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) => spec.parse::<Targets>().unwrap_or_else(|e| {
            eprintln!("warning: ignoring RUST_LOG={spec:?}: {e}");
            default
        }),
        Err(_) => default,
    };
    // Plain text, no colour: tracing-subscriber's `ansi` feature is left out for the
    // binary size gate (docs/install.md, Footprint).
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    if stderr_is_journal() {
        registry.with(layer.without_time()).init();
    } else {
        registry.with(layer).init();
    }
}

/// Whether stderr is the systemd journal: `JOURNAL_STREAM` names the device and inode
/// of the stream systemd connected, and they are stderr's (not inherited by a child
/// whose stderr went elsewhere).
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    var.to_str() == Some(&format!("{}:{}", meta.dev(), meta.ino()))
}

/// The one line printed for an error: each cause in turn, except one whose text the
/// message before it already shows (`cannot listen on ...: <io error>` names its source).
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::error_line;

    #[test]
    fn a_cause_the_message_already_names_is_not_repeated() {
        let io = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let e = crate::server::ServeError::Bind {
            addr: "127.0.0.1:53".parse().unwrap(),
            proto: "udp",
            source: io,
        };
        let e = anyhow::Error::new(e);
        assert_eq!(
            error_line(&e),
            "cannot listen on 127.0.0.1:53 (udp): address in use"
        );
        // Context that does not name its cause keeps it.
        let e = anyhow::Error::new(std::io::Error::other("disk full")).context("writing report");
        assert_eq!(error_line(&e), "writing report: disk full");
    }
}
