//! The shipped config files: `config/metaguard.toml` is exactly the built-in defaults,
//! and every file in `config/` and `config/examples/` parses.

use std::path::{Path, PathBuf};

use metaguard::config::Config;

#[test]
fn shipped_config_equals_the_defaults() {
    let text = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/metaguard.toml"
    ));
    let parsed = Config::parse(text, Path::new("config/metaguard.toml")).unwrap();
    // On failure, compare with `metaguard config check config/metaguard.toml`.
    assert_eq!(
        parsed,
        Config::default(),
        "config/metaguard.toml drifted from Config::default(); the defaults are:\n{}",
        Config::default().to_toml()
    );
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_config_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = toml_files(&root.join("config"));
    files.extend(toml_files(&root.join("config/examples")));
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        if let Err(e) = Config::load(f) {
            panic!("{e}");
        }
    }
}

#[test]
fn examples_say_what_they_are_for() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    let pi = Config::load(&root.join("pi-dns.toml")).unwrap();
    assert!(pi.server.listen.iter().all(|a| a.port() == 53));
    assert!(pi.server.listen.iter().any(|a| a.ip().is_unspecified()));
    let behind = Config::load(&root.join("behind-dnsmasq.toml")).unwrap();
    assert_eq!(
        behind.server.listen,
        vec!["127.0.0.1:5335".parse::<std::net::SocketAddr>().unwrap()]
    );
}

/// Every key the built-in defaults have is written out in `config/metaguard.toml`
/// (equal values alone would pass with keys left out).
#[test]
fn shipped_config_names_every_option() {
    fn keys(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
        if let toml::Value::Table(t) = v {
            for (k, v) in t {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.push(path.clone());
                keys(&path, v, out);
            }
        }
    }
    let defaults: toml::Value =
        toml::from_str(&metaguard::config::Config::default().to_toml()).unwrap();
    let shipped: toml::Value = toml::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/metaguard.toml"
    )))
    .unwrap();
    let (mut want, mut have) = (Vec::new(), Vec::new());
    keys("", &defaults, &mut want);
    keys("", &shipped, &mut have);
    let text = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/metaguard.toml"
    ));
    let missing: Vec<_> = want
        .iter()
        .filter(|k| !have.contains(k))
        // Empty arrays of tables cannot be written out empty; a commented example will do.
        .filter(|k| !text.contains(&format!("# [[{k}]]")))
        .collect();
    assert!(
        missing.is_empty(),
        "config/metaguard.toml lacks: {missing:?}"
    );
}

/// Settings that parse but cannot work are refused by `metaguard config check` with
/// the file, line and column of the offending value (or key), and exit code 1.
#[test]
fn config_check_refuses_settings_that_cannot_work_at_their_place() {
    let cases: &[(&str, usize, usize)] = &[
        ("[upstream]\ndeadline = \"0s\"\n", 2, 12),
        ("[upstream]\nattempt_timeout = \"0ms\"\n", 2, 19),
        ("[server]\nmax_tcp_connections = 0\n", 2, 23),
        ("[server]\nmax_tcp_connections_per_client = 0\n", 2, 34),
        ("[server]\nmax_udp_in_flight = 0\n", 2, 21),
        ("[server]\nthreads = 65\n", 2, 11),
        ("[server]\ntcp_idle_timeout = \"0s\"\n", 2, 20),
        ("[server]\nmax_tcp_queries_per_connection = 0\n", 2, 34),
        ("[server.rate_limit]\nmax_clients = 0\n", 2, 15),
        ("[server.rate_limit]\nburst = 0\n", 2, 9),
        ("[export]\ndnstap_queue = 0\n", 2, 16),
        ("[server.rate_limit]\nqps = 100\nburst = 50\n", 3, 9),
        ("[server]\nallow_clients = []\n", 2, 17),
        ("[server]\nlisten = []\n", 2, 10),
        (
            "[server]\nlisten = [\"0.0.0.0:53\", \"127.0.0.1:53\"]\n",
            2,
            25,
        ),
        ("[server]\nlisten = [\"[::1]:53\", \"[::1]:53\"]\n", 2, 23),
        (
            "[server]\nrebind_allow = [\"lan\", \"not a name\"]\n",
            2,
            24,
        ),
        ("[categories]\nmeta-ia = \"block\"\n", 2, 1),
        (
            "[groups.kids]\nfirst-party = \"block\"\nmeta-ia = \"block\"\n",
            3,
            1,
        ),
        (
            "[[devices]]\nname = \"tab\"\nmatch = [\"aa:bb:cc:dd:ee:01\"]\ngroup = \"kids\"\n",
            4,
            9,
        ),
        (
            "[[devices]]\nname = \"a\"\nmatch = [\"10.0.0.2\"]\n\
             [[devices]]\nname = \"b\"\nmatch = [\"10.0.0.3\", \"10.0.0.2\"]\n",
            6,
            22,
        ),
        (
            "[server]\nlisten = [\"0.0.0.0:5335\"]\n[upstream]\nservers = [\"127.0.0.1:5335\"]\n",
            4,
            12,
        ),
        (
            "[server]\nlisten = [\"127.0.0.1:5335\"]\n[upstream]\nservers = [\"9.9.9.9\", \"tcp://127.0.0.1:5335\"]\n",
            4,
            23,
        ),
        (
            "[server]\nlisten = [\"127.0.0.1:5335\"]\n[metrics]\nlisten = \"0.0.0.0:5335\"\n",
            4,
            10,
        ),
        ("[cache]\nmin_ttl = \"2h\"\nmax_ttl = \"1h\"\n", 2, 11),
        ("[store]\nbatch_size = 0\n", 2, 14),
        ("[store]\nbatch_interval = \"0s\"\n", 2, 18),
        ("[store]\nchannel_capacity = 0\n", 2, 20),
        ("[clients]\nrefresh = \"0s\"\n", 2, 11),
        ("[remote]\nmax_size = 0\n", 2, 12),
        ("[remote]\ntimeout = \"0s\"\n", 2, 11),
        (
            "[[lists]]\nurl = \"https://example.org/l.txt\"\ncategory = \"x\"\nrefresh = \"0s\"\n",
            4,
            11,
        ),
        (
            "[filter]\nblock = [\"ok.example\", \"not a domain\"]\n",
            2,
            24,
        ),
        (
            "[report.email]\nserver = \"smtp.example.org\"\nto = [\"a@example.org\"]\n",
            2,
            10,
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (text, line, col)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("case-{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_metaguard"))
            .args(["config", "check"])
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}: {stderr}");
        let want = format!("error: {}:{line}:{col}: ", file.display());
        assert!(
            stderr.starts_with(&want),
            "{text}: want {want:?}, got {stderr}"
        );
    }
}

/// The category a remote list declares may be given an action before it was fetched;
/// the shipped defaults and examples stay valid (checked above too).
#[test]
fn categories_of_remote_lists_and_custom_are_known() {
    let text = "[[lists]]\nurl = \"https://example.org/l.txt\"\ncategory = \"ads\"\n\
                [categories]\nads = \"block\"\ncustom = \"log\"\n[groups.kids]\nmeta-ai = \"block\"\n\
                [[devices]]\nname = \"tab\"\nmatch = [\"10.0.0.9\"]\ngroup = \"kids\"\n";
    Config::parse(text, Path::new("c.toml")).unwrap();
}
