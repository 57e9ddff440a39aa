//! The command line: clap definitions and the dispatch to each command.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Config, Overrides};
use crate::store::{self, unix_now};
use crate::upstream::UpstreamSpec;

/// A local DNS resolver that blocks and logs Meta's tracking, per device.
#[derive(Debug, Parser)]
#[command(name = "metaguard", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Flags shared by the commands that load the config.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// Config file (default: /etc/metaguard/metaguard.toml when present).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Extra list file (hosts, domains or ABP), category `custom`, action block. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub blocklist: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
        /// Check as this client address would be treated.
        #[arg(long, value_name = "IP")]
        client: Option<IpAddr>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Devices seen, with their Meta hits of the last 7 days.
    Devices {
        #[command(subcommand)]
        command: Option<DevicesCommand>,
        #[command(flatten)]
        db: DbArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
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
        #[arg(long, short = 'n', default_value_t = crate::store::cli::LOG_TAIL)]
        lines: usize,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// What the running server last reported, and the database's size and rows.
    Status {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show every list (embedded, files, remote), or fetch the remote ones.
    Lists {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(subcommand)]
        command: Option<ListsCommand>,
    },
    /// Tracking-exposure report for a week (default: the last complete week, local time).
    Report(ReportArgs),
    /// Config tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

/// `metaguard report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// ISO week YYYY-Www (default, and without a value: the last complete week).
    #[arg(long, value_name = "YYYY-Www", num_args = 0..=1, default_missing_value = "",
          conflicts_with_all = ["since", "until"])]
    pub week: Option<String>,
    /// First day, YYYY-MM-DD (with --until).
    #[arg(long, value_name = "DATE", requires = "until")]
    pub since: Option<String>,
    /// Last day, YYYY-MM-DD, included (with --since).
    #[arg(long, value_name = "DATE", requires = "since")]
    pub until: Option<String>,
    /// Only this device: name, MAC, key or id.
    #[arg(long, value_name = "D")]
    pub device: Option<String>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Write the report to FILE (atomically, mode 0640) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Database to read (repeatable: reports of several routers are merged, devices
    /// joined by MAC, else name). Default: [store] db of the config.
    #[arg(long, value_name = "PATH")]
    pub db: Vec<PathBuf>,
    /// Config file (default: /etc/metaguard/metaguard.toml when present).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Also e-mail the report as [report.email] says.
    #[arg(long)]
    pub email: bool,
    /// Deliver the report as configured, as the weekly unit does: write it as HTML to
    /// [report] dir (LABEL.html) and, when [report.email] server is set, e-mail it.
    /// Prints what it delivered instead of the report.
    #[arg(long)]
    pub deliver: bool,
    /// Also POST the JSON report to URL.
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Markdown,
    Html,
    Json,
    Csv,
}

impl From<ReportFormat> for crate::report::Format {
    fn from(f: ReportFormat) -> Self {
        use crate::report::Format as F;
        match f {
            ReportFormat::Text => F::Text,
            ReportFormat::Markdown => F::Markdown,
            ReportFormat::Html => F::Html,
            ReportFormat::Json => F::Json,
            ReportFormat::Csv => F::Csv,
        }
    }
}

/// Turn `metaguard report` flags into a request (config loaded, defaults applied).
pub fn report_request(args: &ReportArgs) -> anyhow::Result<crate::report::ReportRequest> {
    use std::io::IsTerminal;

    use crate::report::{ReportRequest, When};
    let (config, _) = Config::locate(args.config.as_deref())?;
    let dbs = if args.db.is_empty() {
        vec![config.store.db.clone()]
    } else {
        args.db.clone()
    };
    let when = match (&args.week, &args.since, &args.until) {
        (Some(w), _, _) if !w.is_empty() => When::Week(w.clone()),
        (_, Some(s), Some(u)) => When::Range {
            since: s.clone(),
            until: u.clone(),
        },
        _ => When::LastWeek,
    };
    Ok(ReportRequest {
        dbs,
        config: config.report,
        when,
        tz: crate::report::local_tz(),
        now: jiff::Timestamp::now(),
        device: args.device.clone(),
        format: args.format.into(),
        out: args.out.clone(),
        email: args.email,
        deliver: args.deliver,
        webhook: args.webhook.clone(),
        tls: config.tls,
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    })
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective config, or the errors with file:line:column (exit 1).
    Check {
        /// Config file (default: /etc/metaguard/metaguard.toml when present).
        path: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Name a device (the server's own names never overwrite it).
    Rename { id: i64, name: String },
}

/// Where the commands that read the hit log find it.
#[derive(Debug, Clone, clap::Args)]
pub struct DbArgs {
    /// The database (default: [store] db of the config).
    #[arg(long, value_name = "PATH", global = true)]
    pub db: Option<PathBuf>,
    /// Config file to take [store] db from (default: /etc/metaguard/metaguard.toml when present).
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
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
pub enum ListsCommand {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Load the config the way `serve` does, with flags applied.
fn load(args: &ConfigArgs, overrides: Overrides) -> anyhow::Result<Config> {
    let (mut config, _) = Config::locate(args.config.as_deref())?;
    let overrides = Overrides {
        blocklist: args.blocklist.clone(),
        ..overrides
    };
    config.apply(&overrides);
    Ok(config)
}

/// Whether stderr is the systemd journal: `JOURNAL_STREAM` names the device and inode
/// of the stream systemd connected, and they are stderr's (not inherited by a child
/// whose stderr went elsewhere).
pub fn stderr_is_journal() -> bool {
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
            let threads = Config::locate(config.config.as_deref())
                .map(|(c, _)| c.server.threads)
                .unwrap_or(1);
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if threads > 0 {
                builder.worker_threads(threads);
            }
            let rt = builder
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(crate::server::run(config.config.clone(), overrides))?;
            Ok(0)
        }
        Command::Check {
            config,
            names,
            client,
            format,
        } => {
            let cfg = load(&config, Overrides::default())?;
            let out = crate::check::run(&cfg, &names, client, format == Format::Json)?;
            print!("{out}");
            Ok(0)
        }
        Command::Devices {
            command,
            db,
            format,
        } => {
            let path = db.path()?;
            let out = match command {
                None => store::cli::devices(&path, unix_now(), format == Format::Json)?,
                Some(DevicesCommand::Rename { id, name }) => store::cli::rename(&path, id, &name)?,
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
                .map(|s| store::cli::parse_since(&s, unix_now()))
                .transpose()?;
            let filter = store::HitFilter {
                device,
                category,
                since,
                after_id: None,
                limit: lines,
            };
            let json = format == Format::Json;
            if follow {
                let poll = std::time::Duration::from_millis(500);
                store::cli::follow(&path, &filter, json, poll, &mut std::io::stdout())?;
            } else {
                print!("{}", store::cli::log(&path, &filter, json)?.0);
            }
            Ok(0)
        }
        Command::Status { db, format } => {
            print!(
                "{}",
                store::cli::status(&db.path()?, format == Format::Json)?
            );
            Ok(0)
        }
        Command::Lists {
            config,
            format,
            command: None,
        } => {
            let cfg = load(&config, Overrides::default())?;
            let rows = crate::remote::list_rows(&cfg)?;
            print!(
                "{}",
                crate::remote::render_rows(&rows, format == Format::Json)
            );
            Ok(0)
        }
        Command::Lists {
            command: Some(ListsCommand::Update { config, force }),
            ..
        } => {
            let cfg = load(&config, Overrides::default())?;
            let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            Ok(rt.block_on(lists_update(&cfg, force)))
        }
        Command::Report(args) => {
            let req = report_request(&args)?;
            print!("{}", crate::report::run(&req)?);
            Ok(0)
        }
        Command::Config {
            command: ConfigCommand::Check { path },
        } => {
            let result = match &path {
                Some(p) => Config::load(p),
                None => Config::locate(None).map(|(c, _)| c),
            };
            match result {
                Ok(c) => {
                    print!("{}", c.to_toml());
                    Ok(0)
                }
                Err(e) => {
                    // One line a problem, each with its file:line:column.
                    for line in e.to_string().lines() {
                        eprintln!("error: {line}");
                    }
                    Ok(1)
                }
            }
        }
    }
}

/// `metaguard lists update`: a one-line status (`[done/total] url (KiB)`) on stderr when
/// both stdout and stderr are a terminal, plain lines otherwise.
/// Exit code 0 when every remote list ends with a usable copy, else 1.
pub async fn lists_update(cfg: &Config, force: bool) -> i32 {
    use crate::remote::UpdateEvent;
    use std::io::{IsTerminal, Write};
    let tty = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    // (lists finished, lists due)
    let counts = std::sync::Mutex::new((0usize, 0usize));
    let status = |msg: Option<&str>| {
        if !tty {
            return;
        }
        let (pos, len) = *counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        // Clear the line; then the status, cut to the terminal width (COLUMNS, else 80).
        let _ = write!(err, "\r\x1b[2K");
        if let Some(msg) = msg {
            let width = std::env::var("COLUMNS")
                .ok()
                .and_then(|c| c.parse::<usize>().ok())
                .unwrap_or(80);
            let line: String = format!("[{pos}/{len}] {msg}")
                .chars()
                .take(width.saturating_sub(1))
                .collect();
            let _ = write!(err, "{line}");
        }
        let _ = err.flush();
    };
    let progress = |ev: UpdateEvent| match ev {
        UpdateEvent::Started { total, url, .. } => {
            counts.lock().unwrap_or_else(|e| e.into_inner()).1 = total;
            status(Some(&url));
        }
        UpdateEvent::Progress { url, bytes } => {
            status(Some(&format!("{url} ({} KiB)", bytes / 1024)));
        }
        UpdateEvent::Finished(o) => {
            status(None);
            println!("{o}");
            counts.lock().unwrap_or_else(|e| e.into_inner()).0 += 1;
        }
    };
    let remote = crate::remote::RemoteSettings::of(cfg);
    let outcomes = crate::remote::update_all(&remote, force, &progress).await;
    if outcomes.is_empty() {
        println!("no remote list due ({} configured)", cfg.lists.len());
    }
    if crate::remote::all_usable(&remote, &outcomes) {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod error_line_tests {
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
