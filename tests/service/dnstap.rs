//! The dnstap export against real consumers no one here wrote: the real server on
//! 127.0.0.1, queries over real UDP, the stream captured by Debian's `fstrm_capture`
//! and decoded by `dnstap-ldns`; the capture killed and restarted mid-stream, under
//! load, with the DNS answers and the drop counter checked.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use hickory_proto::rr::RecordType;
use metaguard::config::Config;
use metaguard::export::{ClientAddress, Endpoint, Messages};

/// Whether fstrm_capture and dnstap-ldns are here; says so when not.
fn tools() -> bool {
    tools::installed(&["fstrm_capture", "dnstap-ldns", "ss"])
}

/// A running `fstrm_capture` on a Unix socket, writing one file.
struct Capture {
    child: Child,
    sock: PathBuf,
    file: PathBuf,
}

impl Capture {
    fn start(sock: &Path, file: PathBuf) -> Capture {
        let _ = std::fs::remove_file(sock);
        let child = Command::new("fstrm_capture")
            .args(["-t", "protobuf:dnstap.Dnstap", "-u"])
            .arg(sock)
            .arg("-w")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("fstrm_capture runs");
        // It is ready once it listens (its socket file exists a moment before: a
        // connection then is refused, and the server's frames dropped).
        let deadline = Instant::now() + Duration::from_secs(10);
        while ss(&["-xlnH", "src"], sock).lines().next().is_none() {
            assert!(Instant::now() < deadline, "fstrm_capture does not listen");
            std::thread::sleep(Duration::from_millis(10));
        }
        Capture {
            child,
            sock: sock.to_path_buf(),
            file,
        }
    }

    fn signal(&mut self, sig: &str) {
        process::kill(self.child.id(), sig);
        self.child.wait().unwrap();
    }

    /// Stop it as a service stops (SIGTERM: it closes its file), and return the file.
    /// First it has read what was sent to it: the server counts a frame as written once
    /// the kernel has it, and what still waits in the capture's socket is lost with it.
    fn stop(mut self) -> PathBuf {
        self.drained();
        self.signal("-TERM");
        self.file.clone()
    }

    /// Wait until no connection to the capture holds bytes it has not read (`ss`: the
    /// kernel's own receive queue of each socket on the capture's path).
    fn drained(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Netid, State, Recv-Q, ...
            let text = ss(&["-xnH", "src"], &self.sock);
            let unread: u64 = text
                .lines()
                .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
                .sum();
            if unread == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "fstrm_capture left {unread} bytes unread:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `ss ARGS PATH`: the Unix sockets on `path`, as the kernel lists them (sock_diag).
fn ss(args: &[&str], path: &Path) -> String {
    process::stdout_ok(Command::new("ss").args(args).arg(path))
}

/// One message as dnstap-ldns decodes it: type, query name, query address.
#[derive(Debug, Clone)]
struct Msg {
    kind: String,
    name: String,
    addr: Option<String>,
}

/// Decode a capture file with `dnstap-ldns -y` (YAML, one document per message).
fn decode(file: &Path) -> Vec<Msg> {
    let out = Command::new("dnstap-ldns")
        .arg("-y")
        .arg("-r")
        .arg(file)
        .output()
        .expect("dnstap-ldns runs");
    assert!(
        out.status.success(),
        "dnstap-ldns failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut msgs = Vec::new();
    for doc in text.split("---\n").filter(|d| d.contains("type: MESSAGE")) {
        let field = |key: &str| {
            doc.lines()
                .find_map(|l| l.trim_start().strip_prefix(key))
                .map(|v| v.trim().trim_matches('"').to_string())
        };
        let kind = doc
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("type: "))
            .find(|t| t.starts_with("CLIENT_"))
            .unwrap_or_default()
            .to_string();
        // The question section: ";NAME. IN TYPE" in the decoded DNS message.
        let name = doc
            .lines()
            .find_map(|l| {
                let l = l.trim_start();
                let q = l.strip_prefix(';')?;
                let owner = q.split_whitespace().next()?;
                (owner.ends_with('.') && q.contains("IN")).then(|| owner.to_string())
            })
            .unwrap_or_default();
        msgs.push(Msg {
            kind,
            name,
            addr: field("query_address: "),
        });
    }
    msgs
}

/// The data frames of a Frame Streams file (what was captured, whatever decodes it).
fn payloads(file: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(file).unwrap_or_default();
    let (mut at, mut out) = (0, Vec::new());
    while let Some(len) = bytes.get(at..at + 4) {
        let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
        if len == 0 {
            // A control frame: its own length follows.
            let Some(clen) = bytes.get(at + 4..at + 8) else {
                break;
            };
            at += 8 + u32::from_be_bytes(clen.try_into().unwrap()) as usize;
        } else {
            let Some(p) = bytes.get(at + 4..at + 4 + len) else {
                break;
            };
            out.push(p.to_vec());
            at += 4 + len;
        }
    }
    out
}

fn frames_in(file: &Path) -> usize {
    payloads(file).len()
}

/// Field 3 (`extra`) of each captured message, as `protoc --decode_raw` (no schema)
/// reads it; `None` when protoc is not installed. dnstap-ldns does not print `extra`.
fn extras(file: &Path) -> Option<Vec<serde_json::Value>> {
    if !tools::have("protoc") {
        eprintln!("skipped the extra check: protoc not installed (protobuf-compiler)");
        return None;
    }
    let mut out = Vec::new();
    for p in payloads(file) {
        let mut child = Command::new("protoc")
            .arg("--decode_raw")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), &p).unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success());
        let text = String::from_utf8(o.stdout).unwrap();
        let raw = text
            .lines()
            .find_map(|l| l.strip_prefix("3: \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap_or_else(|| panic!("no field 3 (extra) in\n{text}"));
        let json = raw.replace("\\\"", "\"").replace("\\\\", "\\");
        out.push(serde_json::from_str(&json).unwrap_or_else(|_| panic!("extra is JSON: {json}")));
    }
    Some(out)
}

fn dnstap_config(up: &Upstream, sock: &Path) -> Config {
    let mut c = config(up);
    c.export.dnstap = Some(Endpoint::Unix(sock.to_path_buf()));
    c
}

/// Wait until the server accounted for `frames` dnstap frames (written or dropped).
async fn accounted(srv: &metaguard::server::Running, frames: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = srv.stats();
        if s.dnstap_frames + s.dnstap_dropped >= frames {
            return;
        }
        assert!(Instant::now() < deadline, "only {s:?} of {frames} frames");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const BLOCKED: &str = "connect.facebook.net.";

#[tokio::test]
async fn hits_reach_fstrm_capture_and_decode_with_dnstap_ldns() {
    if !tools() {
        return;
    }
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dnstap.sock");
    let cap = Capture::start(&sock, dir.path().join("a.fstrm"));
    let mut cfg = dnstap_config(&up, &sock);
    cfg.export.dnstap_identity = "router-7".into();
    let srv = serve(cfg).await;
    let addr = srv.addrs()[0];
    let blocked = udp(addr, BLOCKED, RecordType::A, Q::default()).await;
    assert_eq!(ips(&blocked), ["0.0.0.0"]);
    // Not a hit: not exported by default.
    udp(addr, "www.example.com.", RecordType::A, Q::default()).await;
    udp(addr, "graph.facebook.com.", RecordType::AAAA, Q::default()).await;
    accounted(&srv, 4).await;
    let s = srv.stats();
    assert_eq!((s.dnstap_frames, s.dnstap_dropped), (4, 0), "{s:?}");
    srv.stop().await;
    let file = cap.stop();
    let msgs = decode(&file);
    let kinds: Vec<_> = msgs
        .iter()
        .map(|m| (m.kind.as_str(), m.name.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("CLIENT_QUERY", BLOCKED),
            ("CLIENT_RESPONSE", BLOCKED),
            ("CLIENT_QUERY", "graph.facebook.com."),
            ("CLIENT_RESPONSE", "graph.facebook.com."),
        ],
        "{msgs:#?}"
    );
    assert_eq!(msgs[0].addr.as_deref(), Some("127.0.0.1"));
    let Some(extras) = extras(&file) else { return };
    assert_eq!(extras.len(), 4);
    for extra in &extras[..2] {
        let keys: Vec<_> = extra.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            ["action", "category", "device", "device_name", "rule", "v"],
            "{extra}"
        );
        assert_eq!(extra["v"], 1, "{extra}");
        assert_eq!(extra["device"], "ip:127.0.0.1", "{extra}");
        assert_eq!(extra["action"], "block", "{extra}");
        assert_eq!(extra["category"], "pixel", "{extra}");
        assert!(
            extra["rule"].as_str().is_some_and(|r| !r.is_empty()),
            "{extra}"
        );
    }
    assert_eq!(extras[2]["action"], "log", "{}", extras[2]);
}

/// Off at start; a reload (what SIGHUP does) takes the new `[export]`: all queries,
/// hashed client addresses.
#[tokio::test]
async fn reload_turns_it_on_with_all_queries_and_hashed_addresses() {
    if !tools() {
        return;
    }
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dnstap.sock");
    let cap = Capture::start(&sock, dir.path().join("b.fstrm"));
    let cfg = config(&up);
    let srv = serve(cfg.clone()).await;
    let addr = srv.addrs()[0];
    udp(addr, BLOCKED, RecordType::A, Q::default()).await;
    let mut on = dnstap_config(&up, &sock);
    on.export.dnstap_messages = Messages::All;
    on.export.dnstap_client_address = ClientAddress::Hash;
    srv.reload(on).unwrap();
    udp(addr, "www.example.com.", RecordType::A, Q::default()).await;
    udp(addr, BLOCKED, RecordType::A, Q::default()).await;
    accounted(&srv, 4).await;
    assert_eq!(srv.stats().dnstap_dropped, 0);
    srv.stop().await;
    let file = cap.stop();
    let msgs = decode(&file);
    let names: Vec<_> = msgs.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        ["www.example.com.", "www.example.com.", BLOCKED, BLOCKED]
    );
    let addrs: Vec<_> = msgs
        .iter()
        .map(|m| m.addr.clone().unwrap_or_default())
        .collect();
    for a in &addrs {
        assert!(
            a.starts_with("24") || a.starts_with("25"),
            "hashed into 240/4: {addrs:?}"
        );
        assert_eq!(*a, addrs[0], "one client, one pseudonym");
    }
    let Some(extras) = extras(&file) else { return };
    assert!(extras[0]["category"].is_null(), "{}", extras[0]);
    assert_eq!(extras[2]["action"], "block");
    for e in &extras {
        let dev = e["device"].as_str().unwrap();
        assert_eq!(
            dev,
            format!("ip:{}", addrs[0]),
            "the same pseudonym in both places"
        );
    }
}

/// The collector restarts mid-stream (stopped as a service stops, started again on the
/// same socket): the output reconnects and the new capture gets what follows.
#[tokio::test]
async fn output_resumes_after_the_capture_restarts() {
    if !tools() {
        return;
    }
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dnstap.sock");
    let cap = Capture::start(&sock, dir.path().join("1.fstrm"));
    let srv = serve(dnstap_config(&up, &sock)).await;
    let addr = srv.addrs()[0];
    let ask = |n: &str| {
        let n = n.to_string();
        async move { udp(addr, &n, RecordType::A, Q::default()).await }
    };
    ask("a.connect.facebook.net.").await;
    accounted(&srv, 2).await;
    let first = cap.stop();
    // Asked while no collector listens: held in the queue, or dropped and counted.
    ask("b.connect.facebook.net.").await;
    let cap = Capture::start(&sock, dir.path().join("2.fstrm"));
    ask("c.connect.facebook.net.").await;
    accounted(&srv, 6).await;
    let s = srv.stats();
    srv.stop().await;
    assert_eq!(s.dnstap_frames + s.dnstap_dropped, 6, "{s:?}");
    let second = decode(&cap.stop());
    let names = |m: &[Msg]| m.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&decode(&first)), ["a.connect.facebook.net."; 2]);
    let got = names(&second);
    assert!(
        got.ends_with(&[
            "c.connect.facebook.net.".to_string(),
            "c.connect.facebook.net.".to_string()
        ]),
        "{got:?}"
    );
    assert_eq!(frames_in(&dir.path().join("2.fstrm")), got.len());
}

/// Under load, the capture is killed (SIGKILL) and later started again: every query is
/// answered as before, and every frame is either written or counted as dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_killed_under_load_dns_unaffected_and_drops_exact() {
    if !tools() {
        return;
    }
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dnstap.sock");
    let mut cap = Capture::start(&sock, dir.path().join("1.fstrm"));
    let mut cfg = dnstap_config(&up, &sock);
    cfg.export.dnstap_queue = std::num::NonZeroUsize::new(64).unwrap();
    let srv = serve(cfg).await;
    let addr = srv.addrs()[0];
    let burst = |from: usize, n: usize| async move {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..4 {
            tasks.spawn(async move {
                for i in (from + w..from + n).step_by(4) {
                    let name = format!("q{i}.connect.facebook.net.");
                    let m = udp(addr, &name, RecordType::A, Q::default()).await;
                    assert_eq!(ips(&m), ["0.0.0.0"], "{name}");
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    };
    burst(0, 400).await;
    cap.signal("-KILL");
    let started = Instant::now();
    burst(400, 800).await;
    let while_gone = started.elapsed();
    let cap = Capture::start(&sock, dir.path().join("2.fstrm"));
    // Once reconnected (a frame written after the restart), the last burst.
    let before = srv.stats().dnstap_frames;
    burst(1200, 4).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while srv.stats().dnstap_frames == before {
        assert!(Instant::now() < deadline, "no reconnect: {:?}", srv.stats());
        burst(1200, 4).await;
    }
    burst(2000, 400).await;
    let queries = srv.stats().blocked;
    accounted(&srv, 2 * queries).await;
    let s = srv.stats();
    srv.stop().await;
    assert_eq!(s.dnstap_frames + s.dnstap_dropped, 2 * s.blocked, "{s:?}");
    assert!(
        s.dnstap_dropped > 0,
        "the queue of 64 overflowed while gone: {s:?}"
    );
    let captured = frames_in(&cap.stop()) as u64;
    assert!(
        captured >= 800,
        "the last burst is captured: {captured} {s:?}"
    );
    assert!(captured + frames_in(&dir.path().join("1.fstrm")) as u64 <= s.dnstap_frames);
    eprintln!("800 queries answered in {while_gone:?} with the collector gone; {s:?}");
}

/// A bad destination is refused with file:line:column, like every other setting.
#[test]
fn a_bad_destination_names_file_line_and_column() {
    let text =
        "[server]\nlisten = [\"127.0.0.1:53\"]\n\n[export]\ndnstap = \"udp://10.0.0.1:6000\"\n";
    let e = Config::parse(text, Path::new("/etc/metaguard/metaguard.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("/etc/metaguard/metaguard.toml:5:10: "), "{e}");
    assert!(e.contains("not a dnstap destination"), "{e}");
    let ok: Config = Config::parse(
        "[export]\ndnstap = \"tcp://127.0.0.1:6000\"\ndnstap_messages = \"all\"\n",
        Path::new("x"),
    )
    .unwrap();
    assert_eq!(
        ok.export.dnstap,
        Some(Endpoint::Tcp("127.0.0.1".into(), 6000))
    );
    let _: SocketAddr = "127.0.0.1:6000".parse().unwrap();
}
