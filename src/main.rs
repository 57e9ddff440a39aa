//! The `metaguard` binary: parse the command line, set up logging, dispatch.

use clap::Parser;

fn main() {
    let cli = metaguard::cli::Cli::parse();
    metaguard::cli::init_tracing();
    match metaguard::cli::dispatch(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {}", metaguard::cli::error_line(&e));
            std::process::exit(1);
        }
    }
}
