//! The `metaguard` binary: parse the command line, set up logging, dispatch.

use clap::Parser;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

fn main() {
    let cli = metaguard::cli::Cli::parse();
    // INFO for our own start/reload/shutdown lines; hickory logs every query at INFO.
    // RUST_LOG takes `level` and `target=level` directives (e.g. `metaguard=debug`); a
    // `Targets` filter reads them without the regex engine `EnvFilter` would link in.
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
    // Colour only on a terminal; under systemd the journal stamps each line itself.
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let registry = tracing_subscriber::registry().with(filter);
    if metaguard::cli::stderr_is_journal() {
        registry.with(layer.without_time()).init();
    } else {
        registry.with(layer).init();
    }
    match metaguard::cli::dispatch(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {}", metaguard::cli::error_line(&e));
            std::process::exit(1);
        }
    }
}
