//! The shipped config files: `config/metaguard.toml` is exactly the built-in defaults,
//! and every file in `config/` and `config/examples/` parses.

use std::path::{Path, PathBuf};

use metaguard::config::Config;

#[test]
fn shipped_config_equals_the_defaults() {
    let text = include_str!("../config/metaguard.toml");
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
    let shipped: toml::Value = toml::from_str(include_str!("../config/metaguard.toml")).unwrap();
    let (mut want, mut have) = (Vec::new(), Vec::new());
    keys("", &defaults, &mut want);
    keys("", &shipped, &mut have);
    let text = include_str!("../config/metaguard.toml");
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
