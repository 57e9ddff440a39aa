//! The TOML config: one section per module, built-in defaults, command-line overrides,
//! and errors that name the file, line and column.

mod check;
mod limit;
mod name;

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::de::Visitor;
use serde::{Deserialize, Deserializer, Serialize};

use crate::bypass::BypassConfig;
use crate::cache::CacheConfig;
use crate::clients::{ClientsConfig, DeviceConfig};
use crate::export::ExportConfig;
use crate::filter::FilterConfig;
use crate::metrics::MetricsConfig;
use crate::policy::{CategoryActions, GroupsConfig};
use crate::remote::{RemoteConfig, RemoteListConfig};
use crate::report::ReportConfig;
use crate::server::ServerConfig;
pub(crate) use crate::store::StoreConfig;
use crate::tls::TlsConfig;
use crate::upstream::{UpstreamConfig, UpstreamSpec};
pub(crate) use check::{Problem, Seg};
pub(crate) use limit::at_least_one;
pub(crate) use name::{DomainName, ListedName, NotADomain, in_zone};

/// Where `serve` looks for a config when `--config` is not given.
pub(crate) const DEFAULT_PATH: &str = "/etc/metaguard/metaguard.toml";

/// The whole config. Every section has defaults, so an empty file is valid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[server]`: listeners, who may ask, and the limits that keep it up.
    pub server: ServerConfig,
    /// `[upstream]`: the resolvers queries go to.
    pub upstream: UpstreamConfig,
    /// `[cache]`: the answer cache.
    pub cache: CacheConfig,
    /// `[filter]`: list files and the answer of a blocked name.
    pub filter: FilterConfig,
    /// `[bypass]`: local answers to the canary, Private Relay and DDR names, and the
    /// logged `bypass` list of public encrypted resolvers.
    pub bypass: BypassConfig,
    /// Action per category, overriding the lists' defaults.
    pub categories: CategoryActions,
    /// Per-group category actions.
    pub groups: GroupsConfig,
    /// `[store]`: the hit log database and its retention.
    pub store: StoreConfig,
    /// Where device names and MACs come from.
    pub clients: ClientsConfig,
    /// `[remote]`: state directory and download limits of remote lists.
    pub remote: RemoteConfig,
    /// The optional Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// `[export]`: the optional dnstap output.
    pub export: ExportConfig,
    /// `[report]`: weekly report defaults and delivery.
    pub report: ReportConfig,
    /// `[web]`: the dashboard served by `serve`.
    pub web: crate::web::WebConfig,
    /// `[tls]`: the private CA every TLS client trusts (upstreams, lists, webhook, SMTP).
    pub tls: TlsConfig,
    /// `[[devices]]`: named devices, how to recognise them, their groups. The arrays of
    /// tables come last so the printed config keeps them after the plain sections.
    pub devices: Vec<DeviceConfig>,
    /// `[[lists]]`: remote lists, fetched and refreshed (see `remote`).
    pub lists: Vec<RemoteListConfig>,
    /// Blocking paused for everyone (a household control, never in a file): every
    /// `block` is answered and logged as `log`.
    #[serde(skip)]
    pub paused: bool,
}

/// A config that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value the config cannot have, at its place in the file.
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        /// The config file.
        file: String,
        /// 1-based line of the value.
        line: usize,
        /// 1-based column of the value.
        column: usize,
        /// What is wrong with it.
        message: String,
    },
    /// Settings that parse but cannot work, each [`ConfigError::Invalid`] with its place.
    #[error("{}", lines(.0))]
    Settings(Vec<ConfigError>),
    /// Settings that cannot work in a config that came from no file alone (a flag, or
    /// a config built in code).
    #[error("{}", lines(.0))]
    Unworkable(Vec<Problem>),
    /// The config file could not be read.
    #[error("cannot read config {file}: {source}")]
    Read {
        /// The config file.
        file: String,
        /// Why it could not be read.
        source: std::io::Error,
    },
}

/// One item a line.
fn lines<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Parse `text`, naming `file` in errors: those of TOML and of the types, then the
    /// settings that parse but cannot work (see `Config::validate`), each at its value.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let config = toml::from_str::<Config>(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError::Invalid {
                file: file.display().to_string(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        let problems = check::problems(&config);
        if problems.is_empty() {
            return Ok(config);
        }
        let doc = toml::de::DeTable::parse(text).ok();
        let mut located: Vec<(usize, usize, String)> = problems
            .into_iter()
            .map(|p| {
                let offset = doc.as_ref().map_or(0, |d| span_of(d, &p));
                let (line, column) = line_col(text, offset);
                (line, column, p.message)
            })
            .collect();
        located.sort();
        Err(ConfigError::Settings(
            located
                .into_iter()
                .map(|(line, column, message)| ConfigError::Invalid {
                    file: file.display().to_string(),
                    line,
                    column,
                    message,
                })
                .collect(),
        ))
    }

    /// The settings that cannot work (zero limits, unknown categories and groups, an
    /// upstream that is metaguard's own address, ...), for a config from no file;
    /// [`Config::parse`] reports the same at their line and column.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let problems = check::problems(self);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Unworkable(problems))
        }
    }

    /// Read and parse a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// `--config PATH` when given, else the default path when it exists, else defaults.
    /// Returns the config and the file it came from.
    pub(crate) fn locate(
        explicit: Option<&Path>,
    ) -> Result<(Config, Option<PathBuf>), ConfigError> {
        match explicit {
            Some(p) => Ok((Config::load(p)?, Some(p.to_path_buf()))),
            None if Path::new(DEFAULT_PATH).is_file() => Ok((
                Config::load(Path::new(DEFAULT_PATH))?,
                Some(DEFAULT_PATH.into()),
            )),
            None => Ok((Config::default(), None)),
        }
    }

    /// Apply command-line flags on top of the file.
    pub(crate) fn apply(&mut self, o: &Overrides) {
        if !o.listen.is_empty() {
            self.server.listen = o.listen.clone();
        }
        if !o.upstream.is_empty() {
            self.upstream.servers = o.upstream.clone();
        }
        self.filter.blocklists.extend(o.blocklist.iter().cloned());
        if let Some(db) = &o.db {
            self.store.db = db.clone();
        }
    }

    /// The config as TOML, as `config check` prints it.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }
}

/// Flags of `serve` and `check` that override the config file.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    pub(crate) listen: Vec<SocketAddr>,
    pub(crate) upstream: Vec<UpstreamSpec>,
    pub(crate) blocklist: Vec<PathBuf>,
    pub(crate) db: Option<PathBuf>,
}

/// Deserialize a string value through `FromStr`, for `Deserialize` impls of config
/// values. The parse error is raised inside a visitor, while toml still knows the value
/// being read, so the error points at the entry itself; parsing after
/// `String::deserialize` returns would blame the enclosing array.
pub(crate) fn deserialize_from_str<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    d.deserialize_str(FromStrVisitor(PhantomData))
}

struct FromStrVisitor<T>(PhantomData<T>);

impl<T: FromStr> Visitor<'_> for FromStrVisitor<T>
where
    T::Err: fmt::Display,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

/// Byte offset in the file of the setting `p` names: its value (or its key, for a
/// wrong key); the nearest enclosing setting written in the file when it is not.
fn span_of(doc: &toml::Spanned<toml::de::DeTable<'_>>, p: &Problem) -> usize {
    use toml::de::{DeTable, DeValue};
    fn in_table<'a, 'i>(
        t: &'a DeTable<'i>,
        k: &str,
    ) -> Option<(Option<usize>, &'a toml::Spanned<DeValue<'i>>)> {
        t.iter()
            .find(|(key, _)| key.get_ref() == k)
            .map(|(key, v)| (Some(key.span().start), v))
    }
    let mut best = 0;
    // `None`: the document's top table.
    let mut cur: Option<&DeValue<'_>> = None;
    for (i, seg) in p.path.iter().enumerate() {
        let found = match (seg, cur) {
            (Seg::Key(k), None) => in_table(doc.get_ref(), k),
            (Seg::Key(k), Some(DeValue::Table(t))) => in_table(t, k),
            (Seg::Index(n), Some(v)) => v.get(*n).map(|v| (None, v)),
            _ => None,
        };
        let Some((key_at, v)) = found else { break };
        let last = i + 1 == p.path.len();
        best = match (key_at, v.get_ref()) {
            (Some(k), _) if last && p.at_key => k,
            // A table's span is its header or braces; its key says more.
            (Some(k), DeValue::Table(_)) => k,
            _ => v.span().start,
        };
        cur = Some(v.get_ref());
    }
    best
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(
            Config::parse("", Path::new("x.toml")).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let d = Config::default();
        assert_eq!(Config::parse(&d.to_toml(), Path::new("x.toml")).unwrap(), d);
    }

    #[test]
    fn unknown_key_names_file_line_column() {
        let text = "[server]\nlisten = [\"127.0.0.1:53\"]\n  bogus = 1\n";
        let err = Config::parse(text, Path::new("/etc/m.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/etc/m.toml:3:3: "), "{err}");
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn bad_values_name_their_location() {
        let cases = [
            ("[upstream]\nservers = [\"dns.google\"]\n", 2, 12),
            ("[server]\nallow_clients = [\"10.0.0.0/33\"]\n", 2, 18),
            ("[filter]\nblock_response = \"drop\"\n", 2, 18),
            ("[upstream]\ndeadline = \"soon\"\n", 2, 12),
            ("[categories]\npixel = \"maybe\"\n", 2, 9),
        ];
        for (text, line, col) in cases {
            let err = Config::parse(text, Path::new("c.toml")).unwrap_err();
            match err {
                ConfigError::Invalid {
                    line: l, column: c, ..
                } => {
                    assert_eq!((l, c), (line, col), "{text}: {err}")
                }
                other => panic!("{other}"),
            }
        }
    }

    #[test]
    fn unusable_ca_file_names_its_location() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello\n").unwrap();
        let missing = dir.path().join("missing.pem");
        for (path, says) in [(&junk, "no PEM certificate"), (&missing, "cannot read")] {
            let text = format!(
                "[tls]\n# private CA\nca_file = {:?}\n",
                path.to_str().unwrap()
            );
            match Config::parse(&text, Path::new("/etc/m.toml")).unwrap_err() {
                ConfigError::Invalid {
                    line,
                    column,
                    message,
                    ..
                } => {
                    assert_eq!((line, column), (3, 11), "{message}");
                    assert!(message.contains(says), "{message}");
                }
                other => panic!("{other}"),
            }
        }
    }

    #[test]
    fn bad_device_and_clients_values_name_their_location() {
        let cases = [
            (
                "[[devices]]\nname = \"tv\"\nmatch = [\"192.168.1.5\", \"aa:bb:cc\"]\n",
                3,
                25,
            ),
            (
                "[[devices]]\nname = \"tv\"\nmatch = [\"10.0.0.0/8\"]\n\
                 [[devices]]\nname = \"pc\"\nmatch = [\"pc.lan\"]\n",
                6,
                10,
            ),
            (
                "[clients]\nleases = [{ path = \"/x\", format = \"kea\" }]\n",
                2,
                35,
            ),
            ("[clients]\nrefresh = \"often\"\n", 2, 11),
        ];
        for (text, line, col) in cases {
            match Config::parse(text, Path::new("/etc/m.toml")).unwrap_err() {
                ConfigError::Invalid {
                    file,
                    line: l,
                    column: c,
                    message,
                } => {
                    assert_eq!(
                        (file.as_str(), l, c),
                        ("/etc/m.toml", line, col),
                        "{text}: {message}"
                    )
                }
                other => panic!("{other}"),
            }
        }
    }

    #[test]
    fn devices_and_clients_round_trip_through_toml() {
        let text = "[clients]\nrefresh = \"1m\"\nneighbours = false\n\
                    [[clients.leases]]\npath = \"/l\"\nformat = \"odhcpd\"\n\
                    [[devices]]\nname = \"tv\"\nmatch = [\"AA-BB-CC-DD-EE-FF\", \"fd00::/64\"]\n\
                    group = \"kids\"\n[[devices]]\nname = \"pc\"\nmatch = [\"10.0.0.2\"]\n\
                    [groups.kids]\nmeta-ai = \"block\"\n";
        let c = Config::parse(text, Path::new("c")).unwrap();
        assert_eq!(c.devices.len(), 2);
        assert_eq!(c.devices[0].group.as_deref(), Some("kids"));
        assert_eq!(c.clients.refresh, std::time::Duration::from_secs(60));
        assert_eq!(c.clients.leases.len(), 1);
        assert_eq!(Config::parse(&c.to_toml(), Path::new("c")).unwrap(), c);
    }

    #[test]
    fn limits_of_zero_and_a_burst_below_its_rate_are_refused_at_their_place() {
        let cases = [
            ("[server]\nmax_udp_in_flight = 0\n", 2, 21, "at least 1"),
            ("[remote]\nmax_size = 0\n", 2, 12, "at least 1"),
            ("[server.rate_limit]\nburst = 0\n", 2, 9, "at least 1"),
            (
                "[server.rate_limit]\nqps = 100\nburst = 50\n",
                3,
                9,
                "at least 100",
            ),
        ];
        for (text, line, col, says) in cases {
            let err = Config::parse(text, Path::new("c.toml")).unwrap_err();
            let s = err.to_string();
            assert!(
                s.starts_with(&format!("c.toml:{line}:{col}: ")),
                "{text}: {s}"
            );
            assert!(s.contains(says), "{text}: {s}");
        }
        // With the limit off, the burst does not matter; at the rate it is fine.
        let off = "[server.rate_limit]\nqps = 0\nburst = 1\n";
        Config::parse(off, Path::new("c")).unwrap();
        let at = "[server.rate_limit]\nqps = 5\nburst = 5\n";
        Config::parse(at, Path::new("c")).unwrap();
        // A config built in code is held to the same rule.
        let mut c = Config::default();
        c.server.rate_limit.burst = std::num::NonZeroU32::new(50).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("burst"));
    }

    #[test]
    fn names_are_lowercased_at_load_and_bad_ones_refused_at_their_entry() {
        let text = "[server]\nrebind_allow = [\".Home.ARPA.\", \"LAN\"]\n\
                    [filter]\nallow = [\"*.CDN.Example.\"]\nblock = [\"Ads.Example\"]\n";
        let c = Config::parse(text, Path::new("c")).unwrap();
        let names: Vec<&str> = c.server.rebind_allow.iter().map(|d| d.as_str()).collect();
        assert_eq!(names, ["home.arpa", "lan"]);
        assert_eq!(c.filter.allow[0].to_string(), "*.cdn.example");
        assert_eq!(c.filter.block[0].to_string(), "ads.example");
        assert!(c.to_toml().contains("\"home.arpa\""), "{}", c.to_toml());
        assert_eq!(Config::parse(&c.to_toml(), Path::new("c")).unwrap(), c);
        for (text, col) in [
            ("[server]\nrebind_allow = [\"lan\", \"not a name\"]\n", 24),
            ("[filter]\nallow = [\"ok.example\", \"*.\"]\n", 24),
        ] {
            let err = Config::parse(text, Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("c.toml:2:{col}: ")),
                "{text}: {err}"
            );
            assert!(err.contains("is not a domain name"), "{err}");
        }
    }

    #[test]
    fn flags_override_file() {
        let mut c = Config::parse("[filter]\nblocklists = [\"/a\"]\n", Path::new("c")).unwrap();
        c.apply(&Overrides {
            listen: vec!["127.0.0.1:5353".parse().unwrap()],
            upstream: vec!["127.0.0.1:5300".parse().unwrap()],
            blocklist: vec!["/b".into()],
            db: Some("/tmp/x.db".into()),
        });
        assert_eq!(
            c.server.listen,
            vec!["127.0.0.1:5353".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(c.upstream.servers.len(), 1);
        assert_eq!(
            c.filter.blocklists,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(c.store.db, PathBuf::from("/tmp/x.db"));
    }
}
