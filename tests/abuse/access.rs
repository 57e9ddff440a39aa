//! Who is answered, as `metaguard serve` runs: refused queries are logged once with
//! counts by source, and with `allow_clients` unset a client on one of the host's own
//! subnets (2001:db8::/64 on a veth pair, in a network namespace the test makes) is
//! answered, checked with dig.

use std::io::Read;
use std::process::{Command, Stdio};

use crate::support::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

/// 25 queries from 127.0.0.1, which `allow_clients` leaves out, give one WARN line that
/// names the source, not 25 lines and not none.
#[tokio::test]
async fn refused_queries_are_logged_once_with_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("m.toml");
    let port = free_port();
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\nallow_clients = [\"10.0.0.0/8\"]\n\
             [upstream]\nservers = [\"127.0.0.1:9\"]\n[filter]\nlists_dir = \"/nonexistent\"\n\
             [store]\ndb = {:?}\n[clients]\nneighbours = false\n",
            dir.path().join("m.db").to_str().unwrap()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let bytes = query_bytes("www.example.com.", RecordType::A, Q::default());
    // Until it listens; each try is one refusal.
    let mut sent = 0;
    let mut answered = None;
    while answered.is_none() && sent < 100 {
        sent += 1;
        answered = udp_raw(addr, &bytes).await;
    }
    let m = Message::from_vec(&answered.expect("an answer")).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    for _ in 0..24 {
        let m = Message::from_vec(&udp_raw(addr, &bytes).await.unwrap()).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    }
    process::kill(child.id(), "-TERM");
    child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let refused: Vec<&str> = err.lines().filter(|l| l.contains("refused")).collect();
    assert_eq!(refused.len(), 1, "{err}");
    assert!(refused[0].contains("WARN"), "{err}");
    assert!(refused[0].contains("127.0.0.1"), "{err}");
    assert!(refused[0].contains("not in allow_clients"), "{err}");
}

/// The shell script run in a fresh network namespace: a veth pair v0 (2001:db8::1/64,
/// the resolver's) and v1 (2001:db8::2/64, in a second namespace: the phone), serve on
/// [::]:5353, and dig from the phone. Prints the serve log, then dig's answer.
const NETNS_SCRIPT: &str = r#"
set -e
ip link set lo up
unshare -n sleep 60 & phone=$!
until [ "$(readlink /proc/$phone/ns/net)" != "$(readlink /proc/self/ns/net)" ]; do :; done
ip link add v0 type veth peer name v1
ip link set v1 netns $phone
ip -6 addr add 2001:db8::1/64 dev v0 nodad
ip link set v0 up
nsenter -t $phone -n ip link set lo up
nsenter -t $phone -n ip -6 addr add 2001:db8::2/64 dev v1 nodad
nsenter -t $phone -n ip link set v1 up
"$BIN" serve --config "$CFG" 2>"$LOG" & mg=$!
# Ready when it says it listens (the log is polled: serve has no readiness pipe here).
until grep -q "listening on" "$LOG" || ! kill -0 $mg 2>/dev/null; do sleep 0.05; done
i=0
until nsenter -t $phone -n dig -p 5353 @2001:db8::1 +tries=1 +time=1 connect.facebook.net AAAA >"$OUT" 2>&1 \
    && grep -q "status:" "$OUT"; do
  i=$((i+1)); [ $i -lt 50 ] || break
done
kill $mg; wait $mg || true
kill $phone; wait $phone || true
cat "$LOG"; echo "=== dig"; cat "$OUT"
"#;

/// Runs [`NETNS_SCRIPT`] with `allow` as the `[server]` allow_clients line (or none);
/// `None` when namespaces cannot be made here.
fn in_netns(allow: Option<&str>) -> Option<String> {
    if !tools::installed(&["unshare", "nsenter", "ip", "dig"]) {
        return None;
    }
    if !tools::netns_possible() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("m.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"[::]:5353\"]\n{}\n[upstream]\nservers = [\"127.0.0.1:9\"]\n\
             [filter]\nlists_dir = \"/nonexistent\"\n[store]\ndb = {:?}\n\
             [clients]\nneighbours = false\n",
            allow.unwrap_or(""),
            dir.path().join("m.db").to_str().unwrap()
        ),
    )
    .unwrap();
    let out = Command::new("unshare")
        .args(["-rn", "sh", "-c", NETNS_SCRIPT])
        .env("BIN", BIN)
        .env("CFG", &cfg)
        .env("LOG", dir.path().join("serve.log"))
        .env("OUT", dir.path().join("dig.out"))
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(text)
}

#[test]
fn a_client_on_the_hosts_own_subnet_is_answered_by_default() {
    let Some(text) = in_netns(None) else { return };
    let (log, dig) = text.split_once("=== dig").unwrap();
    assert!(dig.contains("status: NOERROR"), "{text}");
    assert!(
        dig.lines()
            .any(|l| l.starts_with("connect.facebook.net.") && l.trim_end().ends_with("::")),
        "{text}"
    );
    assert!(log.contains("this host's subnets 2001:db8::/64"), "{log}");
    assert!(!log.contains("refused"), "{log}");

    // Set explicitly, allow_clients is exactly what it says: the phone is refused, and
    // the log says so.
    let Some(text) = in_netns(Some("allow_clients = [\"127.0.0.0/8\", \"::1/128\"]")) else {
        return;
    };
    let (log, dig) = text.split_once("=== dig").unwrap();
    assert!(dig.contains("status: REFUSED"), "{text}");
    assert!(
        log.lines()
            .any(|l| l.contains("refused") && l.contains("2001:db8::2")),
        "{log}"
    );
}
