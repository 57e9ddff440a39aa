//! The real `metaguard` binary: a port for it, a `serve` whose stderr lines a test waits
//! on ("listening on", "reloaded"), one started as systemd starts it (NOTIFY_SOCKET, until
//! READY=1), signals, and a command run to completion.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_metaguard");

/// A port free for UDP and TCP both on 127.0.0.1 (for a server started next to bind).
pub fn free_port() -> u16 {
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The inodes of the IPv4 UDP sockets bound to `addr` in this network namespace
/// (`/proc/net/udp`: the local address as hex, the address in the kernel's byte order).
pub fn udp_socket_inodes(addr: std::net::SocketAddr) -> Vec<String> {
    let std::net::SocketAddr::V4(a) = addr else {
        panic!("an IPv4 address")
    };
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(a.ip().octets()),
        a.port()
    );
    std::fs::read_to_string("/proc/net/udp")
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.get(1) == Some(&local.as_str()))
        .filter_map(|f| Some(f.get(9)?.to_string()))
        .collect()
}

/// Run a command line (`metaguard`'s or a tool's) to completion; its stdout, after
/// asserting it exited 0 (the assertion shows the arguments and stderr).
pub fn stdout_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{:?} runs: {e}", cmd.get_program()));
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Send `sig` (as `kill` takes it: "-HUP", "-TERM") to `pid`.
pub fn kill(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Kills the process if the test fails before it stops it.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `metaguard serve` whose stderr lines arrive on a channel (killed on drop).
pub struct Serve {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl Serve {
    /// Start the binary with `args` and RUST_LOG=info.
    pub fn start(args: &[&str]) -> Serve {
        Serve::start_env(args, &[])
    }

    /// `start` with these environment variables set too.
    pub fn start_env(args: &[&str], env: &[(&str, &Path)]) -> Serve {
        let mut child = Command::new(BIN)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start metaguard");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Serve { child, lines }
    }

    /// Wait for a stderr line containing `needle`; returns it.
    pub fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(l) => seen.push(l),
                Err(e) => panic!(
                    "no line with {needle:?} ({e}); stderr so far:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    /// Send `sig` ("HUP", "TERM").
    pub fn signal(&self, sig: &str) {
        kill(self.child.id(), &format!("-{sig}"));
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Notifications until one contains `want` (or 10 s run out), all pushed to `seen`.
pub fn recv_until(sock: &UnixDatagram, want: &str, seen: &mut Vec<String>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let hit = msg.lines().any(|l| l == want);
            seen.push(msg);
            if hit {
                return true;
            }
        }
    }
    false
}

/// Whether a reload was notified (RELOADING=1, then READY=1) on `sock`, waited for off
/// the async runtime.
pub async fn reloaded(sock: &UnixDatagram) -> bool {
    let s = sock.try_clone().unwrap();
    tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        recv_until(&s, "RELOADING=1", &mut seen) && recv_until(&s, "READY=1", &mut seen)
    })
    .await
    .unwrap()
}

/// A socket standing in for systemd's NOTIFY_SOCKET, in `dir`.
pub fn notify_socket(dir: &Path) -> (PathBuf, UnixDatagram) {
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    (path, sock)
}

/// Start `cmd` (a `metaguard serve` line) as systemd would: NOTIFY_SOCKET in `dir`,
/// stderr into the file `stderr`. Returns once READY=1 came (asserted, with the log),
/// with the process (killed on drop) and the notify socket for what follows.
pub fn start_until_ready(
    mut cmd: Command,
    dir: &Path,
    stderr: &Path,
) -> (KillOnDrop, UnixDatagram) {
    let (sock_path, sock) = notify_socket(dir);
    let child = cmd
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap();
    let child = KillOnDrop(child);
    let mut seen = Vec::new();
    let ready = recv_until(&sock, "READY=1", &mut seen);
    let log = std::fs::read_to_string(stderr).unwrap_or_default();
    assert!(ready, "no READY=1: {seen:?}\n{log}");
    (child, sock)
}

/// [`start_until_ready`] off the async runtime.
pub async fn ready(cmd: Command, dir: &Path, stderr: &Path) -> (KillOnDrop, UnixDatagram) {
    let (d, e) = (dir.to_path_buf(), stderr.to_path_buf());
    tokio::task::spawn_blocking(move || start_until_ready(cmd, &d, &e))
        .await
        .unwrap()
}

/// The 127.0.0.1 address the server's log says it listens on.
pub fn listening_on(log: &str) -> std::net::SocketAddr {
    let line = log
        .lines()
        .find(|l| l.contains("listening on 127.0.0.1:"))
        .unwrap_or_else(|| panic!("{log}"));
    line.split("listening on ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("an address in {line:?}"))
}
