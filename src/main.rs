//! The `metaguard` binary: parse the command line, set up logging, dispatch.

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = metaguard::cli::Cli::parse();
    // INFO for our own start/reload/shutdown lines; hickory logs every query at INFO.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(
            "info,hickory_server=warn,hickory_net=warn,hickory_resolver=warn,hickory_proto=warn",
        )
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match metaguard::cli::dispatch(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
