//! The command line: clap definitions and the dispatch to each command, whose work is
//! in `cli/<command>.rs` (text and JSON output through the one renderer, `cli/table.rs`).

pub(crate) mod check;
pub(crate) mod config;
pub(crate) mod controls;
pub(crate) mod devices;
pub mod lists;
pub(crate) mod log;
pub(crate) mod report;
pub(crate) mod status;
mod stderr;
pub(crate) mod table;
#[cfg(test)]
mod tests;
pub(crate) mod web;

mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Config, Overrides};
use crate::store::{HitFilter, unix_now};
use crate::upstream::UpstreamSpec;
pub use stderr::{error_line, init_tracing};

/// A local DNS resolver that blocks and logs Meta's tracking, per device.
#[derive(Debug, Parser)]
#[command(name = "metaguard", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags shared by the commands that load the config.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConfigArgs {
    /// Config file (default: /etc/metaguard/metaguard.toml when present).
    #[arg(long, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,
    /// Extra list file (hosts, domains or ABP), category `custom`, action block. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub(crate) blocklist: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the resolver.
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
        /// Address to answer on, UDP and TCP (repeatable; default 127.0.0.1:5335 and [::1]:5335).
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Vec<SocketAddr>,
        /// Upstream: IP[:PORT], tcp://IP:PORT, tls://IP:PORT#name, https://IP[:PORT]/dns-query#name (repeatable).
        #[arg(long, value_name = "SPEC")]
        upstream: Vec<UpstreamSpec>,
        /// SQLite database for the hit log.
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
    },
    /// Show the verdict for names, without a server.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
        /// Names to check.
        #[arg(required = true)]
        names: Vec<String>,
        /// Check as this client would be treated: an address, a MAC, or a device name
        /// (from [[devices]] or the DHCP leases).
        #[arg(long, value_name = "IP|MAC|NAME")]
        client: Option<String>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Devices seen, with their Meta hits of the last 7 days.
    Devices {
        #[command(subcommand)]
        command: Option<DevicesCommand>,
        #[command(flatten)]
        db: DbArgs,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// The hit log, newest last (like `pihole -t` with --follow).
    Log {
        #[command(flatten)]
        db: DbArgs,
        /// Keep printing new hits as they are written.
        #[arg(long, short)]
        follow: bool,
        /// Only this device: id, name or MAC.
        #[arg(long, value_name = "D")]
        device: Option<String>,
        /// Only this category.
        #[arg(long, value_name = "C")]
        category: Option<String>,
        /// Only hits since: a duration back (1h, 2d) or a time (2024-05-01T12:00:00Z).
        #[arg(long, value_name = "T")]
        since: Option<String>,
        /// Rows shown before following.
        #[arg(long, short = 'n', default_value_t = log::LOG_TAIL)]
        lines: usize,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// What the running server last reported, and the database's size and rows.
    Status {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Show every list (embedded, files, remote), or fetch the remote ones.
    Lists {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        #[command(subcommand)]
        command: Option<ListsCommand>,
    },
    /// Tracking-exposure report for a week (default: the last complete week, local time).
    Report(ReportArgs),
    /// Household controls: groups, actions, allowed and blocked names, pauses,
    /// schedules. Kept in the state directory over the config; a running `serve`
    /// applies a change within a second. Each change is checked, recorded in the audit
    /// log and made whole, or refused with the reason.
    #[command(after_help = CONTROLS_HELP)]
    Controls {
        /// What to do (see below); nothing: what is set, and the latest changes.
        #[arg(value_name = "WHAT")]
        words: Vec<String>,
        /// Only for this device (action, pause, resume): id, name, MAC or address.
        #[arg(long, value_name = "D")]
        device: Option<String>,
        /// Only for this group (action); a group is made by its first action.
        #[arg(long, value_name = "G", conflicts_with = "device")]
        group: Option<String>,
        /// Config file (default: /etc/metaguard/metaguard.toml when present).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// The dashboard served by `serve` ([web]).
    Web {
        #[command(subcommand)]
        command: WebCommand,
    },
    /// Config tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

/// `metaguard report`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ReportArgs {
    /// ISO week YYYY-Www (default, and without a value: the last complete week).
    #[arg(long, value_name = "YYYY-Www", num_args = 0..=1, default_missing_value = "",
          conflicts_with_all = ["since", "until"])]
    pub(crate) week: Option<String>,
    /// First day, YYYY-MM-DD (with --until).
    #[arg(long, value_name = "DATE", requires = "until")]
    pub(crate) since: Option<String>,
    /// Last day, YYYY-MM-DD, included (with --since).
    #[arg(long, value_name = "DATE", requires = "since")]
    pub(crate) until: Option<String>,
    /// Only this device: name, MAC, key or id.
    #[arg(long, value_name = "D")]
    pub(crate) device: Option<String>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub(crate) format: ReportFormat,
    /// Write the report to FILE (atomically, mode 0640) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// Database to read (repeatable: reports of several routers are merged, devices
    /// joined by MAC, else name). Default: [store] db of the config.
    #[arg(long, value_name = "PATH")]
    pub(crate) db: Vec<PathBuf>,
    /// Config file (default: /etc/metaguard/metaguard.toml when present).
    #[arg(long, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,
    /// Also e-mail the report as [report.email] says.
    #[arg(long)]
    pub(crate) email: bool,
    /// Deliver the report as configured, as the weekly unit does: write it as HTML to
    /// [report] dir (LABEL.html) and, when [report.email] server is set, e-mail it.
    /// Prints what it delivered instead of the report.
    #[arg(long)]
    pub(crate) deliver: bool,
    /// Also POST the JSON report to URL.
    #[arg(long, value_name = "URL")]
    pub(crate) webhook: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportFormat {
    Text,
    Markdown,
    Html,
    Json,
    Csv,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the effective config, or the errors with file:line:column (exit 1).
    Check {
        /// Config file (default: /etc/metaguard/metaguard.toml when present).
        path: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum WebCommand {
    /// Set a new admin password (its argon2 hash goes to <[remote] state_dir>/web-password);
    /// a random one is made and printed unless --stdin gives it.
    Password {
        /// Config file to take [remote] state_dir from (default: /etc/metaguard/metaguard.toml when present).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Read the new password from the first line of stdin (at least 8 characters).
        #[arg(long)]
        stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DevicesCommand {
    /// Name a device (the server's own names never overwrite it).
    Rename {
        /// The device: id, name or MAC (as `metaguard devices` lists them).
        device: String,
        /// Its new name.
        name: String,
    },
    /// Fold OTHER into KEEP: OTHER's hits, totals and addresses become KEEP's, and its
    /// next queries count for KEEP (a phone seen under two addresses, say).
    Merge {
        /// The device that stays: id, name or MAC.
        keep: String,
        /// The device folded into it: id, name or MAC.
        other: String,
    },
    /// Delete a device and its hits, totals and addresses (it comes back as new if it
    /// asks again).
    Forget {
        /// The device: id, name or MAC.
        device: String,
    },
}

/// The changes `metaguard controls` takes (one set of words instead of a clap
/// subcommand each: the size gate).
const CONTROLS_HELP: &str = "\
WHAT:
  group DEVICE GROUP|none         put a device (id, name, MAC or address) in a group
  action CATEGORY block|log|allow|default [--group G | --device D]
                                  a category's action for the household, a group or a device
  allow NAME | block NAME | unlist NAME
                                  never block a name (and its subdomains), block it, or neither
  pause 5m|1h|tomorrow|off [--device D]
                                  pause blocking (blocked names are answered and logged)
  resume [--device D]             end a pause now
  schedule GROUP CATEGORY ACTION DAYS FROM TO
                                  e.g. kids meta-ai block sun-thu 20:00 07:00 (local time;
                                  DAYS: sun-thu, mon,wed, weekdays, weekend, all)
  unschedule N                    remove schedule N as `metaguard controls` numbers them
  audit [N]                       every change, newest first (default 50)";

/// Where the commands that read the hit log find it.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DbArgs {
    /// The database (default: [store] db of the config).
    #[arg(long, value_name = "PATH", global = true)]
    pub(crate) db: Option<PathBuf>,
    /// Config file to take [store] db from (default: /etc/metaguard/metaguard.toml when present).
    #[arg(long, value_name = "PATH", global = true)]
    pub(crate) config: Option<PathBuf>,
}

impl DbArgs {
    fn path(&self) -> anyhow::Result<PathBuf> {
        match &self.db {
            Some(p) => Ok(p.clone()),
            None => Ok(Config::locate(self.config.as_deref())?.0.store.db),
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum ListsCommand {
    /// Fetch the remote lists that are due now (all with --force); exit 1 when a
    /// list is left without a usable copy.
    Update {
        #[command(flatten)]
        config: ConfigArgs,
        /// Fetch every remote list, due or not.
        #[arg(long)]
        force: bool,
    },
}

/// `--format` of the commands that print rows (`check`, `devices`, `log`, `status`,
/// `lists`): aligned text or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    Text,
    Json,
}

/// Load the config the way `serve` does, with flags and the household controls applied.
fn load(args: &ConfigArgs, overrides: Overrides) -> anyhow::Result<Config> {
    let (mut config, _) = Config::locate(args.config.as_deref())?;
    let overrides = Overrides {
        blocklist: args.blocklist.clone(),
        ..overrides
    };
    config.apply(&overrides);
    crate::controls::lay_over(&mut config)?;
    Ok(config)
}

/// Run the parsed command; the process exit code.
pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Serve {
            config,
            listen,
            upstream,
            db,
        } => {
            let overrides = Overrides {
                listen,
                upstream,
                blocklist: config.blocklist.clone(),
                db,
            };
            // The thread count comes from the config, so read it before the runtime
            // exists; `run` reads the config again (errors are reported there).
            let workers = Config::locate(config.config.as_deref())
                .map(|(c, _)| c.server.workers())
                .unwrap_or(1);
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers);
            let live = serve::Liveness::hook(&mut builder);
            let rt = builder
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(serve::run(config.config.clone(), overrides, live))?;
            Ok(0)
        }
        Command::Check {
            config,
            names,
            client,
            format,
        } => {
            let cfg = load(&config, Overrides::default())?;
            print!(
                "{}",
                check::run(
                    &cfg,
                    &names,
                    client.as_deref(),
                    format == OutputFormat::Json
                )?
            );
            Ok(0)
        }
        Command::Devices {
            command,
            db,
            format,
        } => {
            let path = db.path()?;
            let out = match command {
                None => devices::devices(
                    &path,
                    unix_now(),
                    &crate::report::local_tz(),
                    format == OutputFormat::Json,
                )?,
                Some(DevicesCommand::Rename { device, name }) => {
                    devices::rename(&path, &device, &name)?
                }
                Some(DevicesCommand::Merge { keep, other }) => {
                    devices::merge(&path, &keep, &other)?
                }
                Some(DevicesCommand::Forget { device }) => devices::forget(&path, &device)?,
            };
            print!("{out}");
            Ok(0)
        }
        Command::Log {
            db,
            follow,
            device,
            category,
            since,
            lines,
            format,
        } => {
            let path = db.path()?;
            let since = since
                .map(|s| log::parse_since(&s, unix_now()))
                .transpose()?;
            let filter = HitFilter {
                device,
                category,
                since,
                after_id: None,
                limit: lines,
            };
            log::run(
                &path,
                &filter,
                follow,
                &crate::report::local_tz(),
                format == OutputFormat::Json,
            )?;
            Ok(0)
        }
        Command::Status { db, format } => {
            print!(
                "{}",
                status::status(
                    &db.path()?,
                    unix_now(),
                    &crate::report::local_tz(),
                    format == OutputFormat::Json
                )?
            );
            Ok(0)
        }
        Command::Lists {
            config,
            format,
            command: None,
        } => {
            let cfg = load(&config, Overrides::default())?;
            print!(
                "{}",
                lists::render(&lists::rows(&cfg)?, format == OutputFormat::Json)
            );
            Ok(0)
        }
        Command::Lists {
            command: Some(ListsCommand::Update { config, force }),
            ..
        } => {
            let cfg = load(&config, Overrides::default())?;
            let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            Ok(rt.block_on(lists::update(&cfg, force)))
        }
        Command::Report(args) => report::run(&args),
        Command::Controls {
            words,
            device,
            group,
            config,
            format,
        } => {
            print!(
                "{}",
                controls::run(
                    &words,
                    controls::Target { device, group },
                    config.as_deref(),
                    format == OutputFormat::Json
                )?
            );
            Ok(0)
        }
        Command::Web {
            command: WebCommand::Password { config, stdin },
        } => {
            print!("{}", web::password(config.as_deref(), stdin)?);
            Ok(0)
        }
        Command::Config {
            command: ConfigCommand::Check { path },
        } => Ok(config::check(path.as_deref())),
    }
}
