//! Chromedriver on an ephemeral port of 127.0.0.1 with a headless Chromium of its own
//! (fresh profile, no network), a WebDriver session on it, and the page checks the
//! tests share: the viewport width, layout overflow, SVG text, full-page screenshots.
//! Without chromium and chromedriver a test is skipped, unless `CI` is set.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::tools;

/// The widths every page is checked and photographed at: a small phone, a desktop.
pub const WIDTHS: [u32; 2] = [360, 1280];

/// The Chromium binary: Debian's real one behind its `/usr/bin/chromium` wrapper script.
fn chromium() -> Option<PathBuf> {
    let real = Path::new("/usr/lib/chromium/chromium");
    if real.is_file() {
        return Some(real.to_path_buf());
    }
    tools::tool("chromium")
}

/// Chromedriver started for one test, in a process group of its own so that dropping it
/// also ends the Chromium it started.
pub struct Driver {
    child: Child,
    port: u16,
    chromium: PathBuf,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid (process_group(0) below).
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// A browser session: a WebDriver client and the chromedriver behind it.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    _driver: Driver,
}

/// Start chromedriver and a session, or `None` (with a `skipped:` line) when chromium or
/// chromedriver is not installed. With `CI` set a missing browser fails the test.
pub async fn browser() -> Option<Browser> {
    let (Some(chromium), true) = (chromium(), tools::have("chromedriver")) else {
        let msg =
            "chromium or chromedriver not installed (Debian packages chromium, chromium-driver)";
        if std::env::var_os("CI").is_some() {
            panic!("{msg}, and CI is set: the browser tests must run");
        }
        eprintln!("skipped: {msg}");
        return None;
    };
    let driver = start_driver(chromium).await;
    let client = session(&driver).await;
    Some(Browser {
        client,
        _driver: driver,
    })
}

async fn start_driver(chromium: PathBuf) -> Driver {
    use std::os::unix::process::CommandExt;
    let port = crate::support::free_port();
    let child = Command::new(tools::tool("chromedriver").unwrap())
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        port,
        chromium,
        _profile: tempfile::tempdir().unwrap(),
    };
    // Ready when GET /status says so; chromedriver has no other signal to wait on.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(body) = get(port, "/status").await
            && body.contains("\"ready\":true")
        {
            break driver;
        }
        assert!(Instant::now() < deadline, "chromedriver not ready in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET path` from 127.0.0.1:`port`: what arrived within a second (chromedriver keeps
/// the connection open), or `None` if nothing listens yet.
async fn get(port: u16, path: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.ends_with(b"}}") || out.ends_with(b"}}\n") {
            break;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

async fn session(d: &Driver) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--lang=en-US",
        "--window-size=1280,800",
    ]
    .into_iter()
    .map(String::from)
    .chain([format!("--user-data-dir={}", d._profile.path().display())])
    .collect::<Vec<_>>();
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": d.chromium, "args": args },
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", d.port))
        .await
        .expect("a WebDriver session")
}

impl Browser {
    /// Make the viewport (`window.innerWidth`) `width` px wide.
    pub async fn set_width(&self, width: u32) {
        self.client.set_window_size(width, 800).await.unwrap();
        // The window includes no browser UI in headless mode, but check. A loaded machine
        // may answer before the page has its new size: wait for the page's `resize` event
        // (or the script timeout, then the assertion says what the width was).
        let inner = self
            .client
            .execute_async(
                "const [w, done] = arguments;
                 if (window.innerWidth === w) { done(w); return; }
                 const f = () => {
                     if (window.innerWidth === w) { removeEventListener('resize', f); done(w); }
                 };
                 addEventListener('resize', f);",
                vec![json!(width)],
            )
            .await
            .unwrap_or_else(|_| json!(format!("not {width} after the script timeout")));
        assert_eq!(inner, json!(width), "viewport width");
    }

    /// Run `script` (a function body) in the page and return its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Layout problems of the current page at the current width, as readable lines: the
    /// document wider than the viewport, an SVG text outside its SVG's viewBox, SVG text
    /// drawn smaller than 9 px, a table's first column squeezed under 5 em.
    pub async fn layout_problems(&self) -> Vec<String> {
        let v = self.eval(LAYOUT_JS).await;
        serde_json::from_value(v).unwrap()
    }

    /// A screenshot of the page at `width` from its top, at most `max_height` px of it
    /// (the whole page if shorter), written to `dir/name-width.png`.
    pub async fn screenshot(&self, dir: &Path, name: &str, width: u32, max_height: u64) {
        // The window's height includes some browser UI even headless.
        let h = self
            .eval(
                "return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight",
            )
            .await
            .as_u64()
            .unwrap();
        self.client
            .set_window_size(width, h.clamp(200, max_height) as u32)
            .await
            .unwrap();
        let png = self.client.screenshot().await.unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(format!("{name}-{width}.png")), png).unwrap();
        self.client.set_window_size(width, 800).await.unwrap();
    }

    /// Close the session (Chromium exits), then chromedriver.
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// Where `METAGUARD_SCREENSHOTS` asks screenshots to go, if it does (relative to the
/// crate root).
pub fn screenshot_dir() -> Option<PathBuf> {
    let d = std::env::var_os("METAGUARD_SCREENSHOTS")?;
    Some(Path::new(env!("CARGO_MANIFEST_DIR")).join(d))
}

const LAYOUT_JS: &str = r#"
const out = [];
// Inside an element that scrolls or clips its overflow (a table's wrapper, an SVG).
function scrolled(e) {
  for (let p = e; p && p !== document.body; p = p.parentElement) {
    const ox = getComputedStyle(p).overflowX;
    if (ox === 'auto' || ox === 'scroll' || ox === 'hidden') return true;
  }
  return false;
}
const de = document.documentElement;
if (de.scrollWidth > window.innerWidth) {
  out.push(`page ${de.scrollWidth} px wide in a ${window.innerWidth} px viewport`);
  // Text overflowing its box (an unbreakable string) does not widen the box itself.
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n && out.length < 20; n = walk.nextNode()) {
    const range = document.createRange();
    range.selectNodeContents(n);
    const r = range.getBoundingClientRect();
    if (r.right > window.innerWidth + 0.5 && !scrolled(n.parentElement))
      out.push(`  text "${n.textContent.slice(0, 60)}" in <${n.parentElement.tagName.toLowerCase()}> ends at ${Math.round(r.right)} px`);
  }
}
for (const e of document.body.querySelectorAll('*')) {
  const r = e.getBoundingClientRect();
  if (r.right > window.innerWidth + 0.5 && getComputedStyle(e).position !== 'fixed') {
    if (!scrolled(e.parentElement) && out.length < 20)
      out.push(`<${e.tagName.toLowerCase()} class="${e.getAttribute('class') || ''}"> ends at ${Math.round(r.right)} px`);
  }
}
for (const svg of document.querySelectorAll('svg')) {
  const vb = svg.viewBox.baseVal;
  if (!vb || vb.width === 0) continue;
  for (const t of svg.querySelectorAll('text')) {
    const b = t.getBBox();
    if (b.x < vb.x - 0.5 || b.y < vb.y - 0.5 || b.x + b.width > vb.x + vb.width + 0.5 || b.y + b.height > vb.y + vb.height + 0.5)
      out.push(`svg text "${t.textContent}" at ${b.x.toFixed(1)},${b.y.toFixed(1)} ${b.width.toFixed(1)}x${b.height.toFixed(1)} outside viewBox ${vb.x} ${vb.y} ${vb.width} ${vb.height}`);
    const px = parseFloat(getComputedStyle(t).fontSize) * svg.getBoundingClientRect().width / vb.width;
    if (px < 9)
      out.push(`svg text "${t.textContent}" drawn at ${px.toFixed(1)} px`);
  }
}
for (const td of document.querySelectorAll('td:first-child')) {
  const r = td.getBoundingClientRect();
  const em = parseFloat(getComputedStyle(td).fontSize);
  if (td.textContent.length > 5 && r.width < 5 * em)
    out.push(`table cell "${td.textContent}" squeezed to ${Math.round(r.width)} px`);
}
return out;
"#;
