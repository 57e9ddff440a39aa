//! Third-party tools (dig, delv, NSD, sqlite3, promtool, fstrm_capture, ...): where they
//! are, and the convention for a machine without them: the test prints `skipped: X not
//! installed (Debian package P)` and passes. `.ci/apt-packages` lists the packages.

use std::path::PathBuf;

/// `name` on PATH or in the sbin directories (nsd lives in /usr/sbin).
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether `name` is installed.
pub fn have(name: &str) -> bool {
    tool(name).is_some()
}

/// The Debian package that installs `tool`, where it is not named after it.
fn package(tool: &str) -> &str {
    match tool {
        "dig" | "delv" => "bind9-dnsutils",
        "kdig" => "knot-dnsutils",
        "ldns-keygen" | "ldns-signzone" => "ldnsutils",
        "promtool" => "prometheus",
        "protoc" => "protobuf-compiler",
        "fstrm_capture" => "fstrm-bin",
        "dnsmasq" => "dnsmasq-base",
        "ip" | "ss" => "iproute2",
        "unshare" | "nsenter" => "util-linux",
        other => other,
    }
}

/// Whether all of `tools` are installed; if not, says which are missing (`skipped: ...`)
/// for the test to return early and pass.
pub fn installed(tools: &[&str]) -> bool {
    let missing: Vec<String> = tools
        .iter()
        .filter(|t| !have(t))
        .map(|t| format!("{t} (Debian package {})", package(t)))
        .collect();
    if !missing.is_empty() {
        eprintln!("skipped: {} not installed", missing.join(", "));
    }
    missing.is_empty()
}

/// Whether this machine lets the test make a network namespace with a veth pair
/// (`unshare -rn`); if not, says why (`skipped: ...`) for the test to return early.
pub fn netns_possible() -> bool {
    let probe = std::process::Command::new("unshare")
        .args(["-rn", "sh", "-c", "ip link add v0 type veth peer name v1"])
        .output();
    match probe {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!(
                "skipped: cannot make a network namespace with a veth pair here: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("skipped: cannot run unshare: {e}");
            false
        }
    }
}
