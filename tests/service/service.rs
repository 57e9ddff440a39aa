//! Running as a service: the systemd notify protocol through the real binary (the
//! Prometheus endpoint is tested in tests/metrics.rs).

use std::process::{Command, Stdio};

use crate::support::process::*;
use crate::support::*;
use hickory_proto::rr::RecordType;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifies_systemd_ready_watchdog_reload_and_stopping() {
    let up = Upstream::start().await;
    let dir = up.dir.path().to_path_buf();
    let (sock_path, sock) = notify_socket(&dir);
    let config = dir.join("metaguard.toml");
    std::fs::write(
        &config,
        "[filter]\nlists_dir = \"/nonexistent/lists\"\n\
         [clients]\nneighbours = false\nleases = []\n",
    )
    .unwrap();
    // systemd sets WATCHDOG_PID to the service's pid: `exec` from a shell keeps `$$`.
    let child = Command::new("sh")
        .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\"", BIN])
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--upstream", &up.spec()])
        .arg("--db")
        .arg(dir.join("m.db"))
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let pid = child.0.id();
    let seen = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        assert!(recv_until(&sock, "READY=1", &mut seen), "{seen:?}");
        // Watchdog every WATCHDOG_USEC / 2 = 100 ms.
        assert!(recv_until(&sock, "WATCHDOG=1", &mut seen), "{seen:?}");
        kill(pid, "-HUP");
        assert!(recv_until(&sock, "RELOADING=1", &mut seen), "{seen:?}");
        assert!(recv_until(&sock, "READY=1", &mut seen), "{seen:?}");
        kill(pid, "-TERM");
        assert!(recv_until(&sock, "STOPPING=1", &mut seen), "{seen:?}");
        seen
    })
    .await
    .unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?} after {seen:?}");
}

/// On a host without IPv6 (a Pi with IPv6 turned off, a router built without it) the
/// default listen addresses still start the resolver: `[::1]` is skipped with a warning
/// and 127.0.0.1 is served. The binary runs in a network namespace of its own whose
/// loopback has IPv6 disabled; where namespaces cannot be made (not root) it is skipped.
#[test]
fn starts_on_ipv4_alone_when_the_host_has_no_ipv6() {
    let can = Command::new("unshare")
        .args(["--net", "sh", "-c", "ip link set lo up"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !can {
        eprintln!("skipping: cannot make a network namespace here (needs root and iproute2)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("metaguard.toml");
    // The defaults' addresses, on a free port; the upstream is never asked.
    std::fs::write(
        &config,
        "[server]\nlisten = [\"127.0.0.1:5335\", \"[::1]:5335\"]\n\
         [upstream]\nservers = [\"127.0.0.1:9\"]\n\
         [clients]\nneighbours = false\nleases = []\n",
    )
    .unwrap();
    let err = dir.path().join("stderr");
    let script = "ip link set lo up && echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6 \
                  && echo 1 >/proc/sys/net/ipv6/conf/lo/disable_ipv6 && exec \"$@\"";
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "sh", "-c", script, "sh", BIN, "serve", "--config"])
        .arg(&config)
        .arg("--db")
        .arg(dir.path().join("m.db"));
    let (mut child, _sock) = start_until_ready(cmd, dir.path(), &err);
    let log = std::fs::read_to_string(&err).unwrap();
    assert!(
        log.contains("IPv6 is off on this host: not listening on [::1]:5335"),
        "{log}"
    );
    assert!(
        log.contains("listening on 127.0.0.1:5335 (udp, tcp)"),
        "{log}"
    );
    assert!(child.0.try_wait().unwrap().is_none(), "it exited: {log}");
}

/// At boot a Pi's resolv.conf may name no nameserver yet (DHCP has not run) or only
/// the Pi itself. `serve` starts anyway, as dnsmasq does: blocked names are answered,
/// the rest get SERVFAIL, and once DHCP writes a nameserver the upstream follows the
/// file without a restart. (Port 53 of a 127/8 address: root only, else skipped.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_without_a_nameserver_and_follows_resolv_conf() {
    let pid = std::process::id();
    let ip = std::net::Ipv4Addr::new(127, 53, (pid >> 8) as u8, pid as u8 | 1);
    let Some(up) = Upstream::start_on_port_53(ip).await else {
        eprintln!("skipping: cannot bind {ip}:53 here (needs root)");
        return;
    };
    let dir = up.dir.path().to_path_buf();
    let resolv = dir.join("resolv.conf");
    std::fs::write(&resolv, "# written by DHCP once it has a lease\n").unwrap();
    let config = dir.join("metaguard.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n\
             [upstream]\nresolv_conf = {:?}\n\
             [clients]\nneighbours = false\nleases = []\n",
            resolv.display().to_string()
        ),
    )
    .unwrap();
    let err = dir.join("stderr");
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--db")
        .arg(dir.join("m.db"));
    let (_child, sock) = ready(cmd, &dir, &err).await;
    let log = std::fs::read_to_string(&err).unwrap();
    assert!(log.contains("lists no usable nameserver"), "{log}");
    let addr = listening_on(&log);

    let m = udp(addr, "connect.facebook.net.", RecordType::A, Q::default()).await;
    assert_eq!(ips(&m), ["0.0.0.0"], "blocked names need no upstream");
    let m = udp(addr, "www.example.com.", RecordType::A, Q::default()).await;
    assert_eq!(
        m.metadata.response_code,
        hickory_proto::op::ResponseCode::ServFail
    );

    // DHCP writes the router's address: the next look at the file reloads.
    std::fs::write(&resolv, format!("nameserver {ip}\n")).unwrap();
    let reloaded = reloaded(&sock).await;
    let log = std::fs::read_to_string(&err).unwrap();
    assert!(reloaded, "{log}");
    let line = log.lines().find(|l| l.contains("reloaded:"));
    assert!(
        line.is_some_and(|l| l.contains(&format!("upstream {ip}:53"))),
        "{log}"
    );
    let m = udp(addr, "www.example.com.", RecordType::A, Q::default()).await;
    assert_eq!(ips(&m), ["192.0.2.1"]);
    assert_eq!(up.hits("www.example.com"), 1);
}

/// A SIGHUP with settings that cannot work keeps the running config: the error is
/// logged with the file, line and column, and the server answers as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_settings_that_cannot_work_keeps_the_running_config() {
    let up = Upstream::start().await;
    let dir = up.dir.path().to_path_buf();
    let config = dir.join("metaguard.toml");
    let common = "[clients]\nneighbours = false\nleases = []\n";
    std::fs::write(
        &config,
        format!("[filter]\nlists_dir = \"/nonexistent\"\nblock = [\"kept.example\"]\n{common}"),
    )
    .unwrap();
    let err = dir.join("stderr");
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--upstream", &up.spec()])
        .arg("--db")
        .arg(dir.join("m.db"));
    let (child, sock) = ready(cmd, &dir, &err).await;
    let addr = listening_on(&std::fs::read_to_string(&err).unwrap());
    let blocked = |m: &hickory_proto::op::Message| ips(m) == ["0.0.0.0"];
    assert!(blocked(
        &udp(addr, "kept.example.", RecordType::A, Q::default()).await
    ));

    let bad = [
        ("[upstream]\ndeadline = \"0s\"\n", 8, 12),
        ("[server]\nmax_tcp_connections = 0\n", 8, 23),
        ("[categories]\nmeta-ia = \"block\"\n", 8, 1),
        ("[groups.kids]\nmeta-ia = \"block\"\n", 8, 1),
        (
            "[[devices]]\nname = \"t\"\nmatch = [\"10.0.0.9\"]\ngroup = \"kids\"\n",
            10,
            9,
        ),
    ];
    let pid = child.0.id();
    for (section, line, col) in bad {
        std::fs::write(
            &config,
            format!(
                "[filter]\nlists_dir = \"/nonexistent\"\nblock = [\"new.example\"]\n{common}{section}"
            ),
        )
        .unwrap();
        let seen_len = std::fs::metadata(&err).unwrap().len() as usize;
        kill(pid, "-HUP");
        let reloaded = reloaded(&sock).await;
        let log = std::fs::read(&err).unwrap();
        // What this reload logged.
        let log = String::from_utf8_lossy(&log[seen_len..]);
        assert!(reloaded, "{log}");
        let want = format!("{}:{line}:{col}: ", config.display());
        assert!(
            log.contains("reload failed, keeping the running config") && log.contains(&want),
            "{section}: want {want:?} in\n{log}"
        );
        // The old lists and upstream still answer; the new entry is not in force.
        assert!(blocked(
            &udp(addr, "kept.example.", RecordType::A, Q::default()).await
        ));
        let m = udp(addr, "new.example.", RecordType::A, Q::default()).await;
        assert_eq!(ips(&m), ["192.0.2.1"], "{section}");
    }
}

/// Under systemd (stderr is the stream `JOURNAL_STREAM` names) log lines carry no
/// timestamp of their own, the journal adds one; elsewhere they do. Never colour codes
/// when stderr is not a terminal.
#[test]
fn log_lines_suit_the_journal_when_stderr_is_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let first_line = |journal: bool| {
        let dir = tempfile::tempdir().unwrap();
        let err = dir.path().join("stderr");
        // start_until_ready truncates this file: the same inode.
        let meta = std::fs::File::create(&err).unwrap().metadata().unwrap();
        let stream = if journal {
            format!("{}:{}", meta.dev(), meta.ino())
        } else {
            format!("{}:{}", meta.dev(), meta.ino() + 1)
        };
        let mut cmd = Command::new(BIN);
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:9",
        ])
        .arg("--db")
        .arg(dir.path().join("m.db"))
        .env("JOURNAL_STREAM", stream);
        let _served = start_until_ready(cmd, dir.path(), &err);
        let log = std::fs::read_to_string(&err).unwrap();
        log.lines().next().unwrap_or_default().to_string()
    };
    let journal = first_line(true);
    assert!(
        journal.starts_with(" INFO metaguard::server::snapshot: "),
        "{journal:?}"
    );
    let plain = first_line(false);
    assert!(plain.starts_with("20"), "a timestamp first: {plain:?}");
    assert!(
        plain.contains(" INFO metaguard::server::snapshot: "),
        "{plain:?}"
    );
    assert!(!journal.contains('\x1b') && !plain.contains('\x1b'));
}
