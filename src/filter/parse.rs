//! Line parsers for the list formats we read: hosts files, plain domain lists and
//! Adblock Plus / AdGuard syntax (detection only; ABP rules are compiled by `adblock`).
//! Domain lists may also hold pattern rules (`||sonar*.xx.fbcdn.net^`, `/regex$/`,
//! see the `pattern` module).

use serde::{Deserialize, Serialize};

pub use super::pattern::PatternRule;

/// The syntax of a list file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListFormat {
    /// Guess from the content (see [`detect_format`]).
    #[default]
    Auto,
    /// `0.0.0.0 name [name...]` lines.
    Hosts,
    /// One domain per line.
    Domains,
    /// Adblock Plus / AdGuard network rules (`||x^`, `@@||x^`, `$important`, ...).
    Abp,
}

impl std::fmt::Display for ListFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ListFormat::Auto => "auto",
            ListFormat::Hosts => "hosts",
            ListFormat::Domains => "domains",
            ListFormat::Abp => "abp",
        })
    }
}

/// One rule read from a hosts or domain list line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRule {
    /// Lowercase ASCII (punycode) name without trailing dot.
    pub name: String,
    /// `*.name`: the rule covers subdomains only, not the name itself.
    pub(crate) subdomains_only: bool,
}

/// What a single line holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// Blank line or comment.
    Empty,
    /// One or more rules (hosts lines may name several hosts).
    Rules(Vec<DomainRule>),
    /// A pattern rule of a domain list (`||sonar*.xx.fbcdn.net^` or `/regex/`).
    Pattern(PatternRule),
    /// A line we could not read; counted and skipped.
    Bad,
}

/// Host names that hosts files map to themselves; never rules.
const HOSTS_IGNORED: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// Guess a list's format from its first meaningful lines.
pub fn detect_format(text: &str) -> ListFormat {
    let mut hosts = 0usize;
    let mut domains = 0usize;
    let mut abp = 0usize;
    for line in text.lines().take(2000) {
        let line = line.trim();
        if line.starts_with("[Adblock") || line.starts_with("[AdGuard") {
            return ListFormat::Abp;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('!') {
            abp += 1;
            continue;
        }
        if line.starts_with("||")
            || line.starts_with("@@")
            || line.contains('^')
            || line.contains('$')
        {
            abp += 1;
        } else if line
            .split_whitespace()
            .next()
            .is_some_and(|w| w.parse::<std::net::IpAddr>().is_ok())
        {
            hosts += 1;
        } else {
            domains += 1;
        }
    }
    if abp > hosts && abp > domains {
        ListFormat::Abp
    } else if hosts >= domains && hosts > 0 {
        ListFormat::Hosts
    } else {
        ListFormat::Domains
    }
}

/// Strip a `#` comment (hosts and domain lists) and surrounding blanks.
fn strip_comment(line: &str) -> &str {
    match line.find('#') {
        Some(i) => line[..i].trim(),
        None => line.trim(),
    }
}

/// Parse one line of a hosts file.
pub fn parse_hosts_line(line: &str) -> Line {
    let body = strip_comment(line);
    if body.is_empty() {
        return Line::Empty;
    }
    let mut words = body.split_whitespace();
    let Some(ip) = words.next() else {
        return Line::Empty;
    };
    if ip.parse::<std::net::IpAddr>().is_err() {
        return Line::Bad;
    }
    let mut rules = Vec::new();
    let mut bad = false;
    for w in words {
        if HOSTS_IGNORED.contains(&w.to_ascii_lowercase().as_str()) {
            continue;
        }
        match normalize_domain(w) {
            Some(name) => rules.push(DomainRule {
                name,
                subdomains_only: false,
            }),
            None => bad = true,
        }
    }
    if rules.is_empty() {
        // `127.0.0.1 localhost` is a normal line that yields no rule.
        if bad { Line::Bad } else { Line::Empty }
    } else {
        Line::Rules(rules)
    }
}

/// Parse one line of a plain domain list (`name`, `*.name`, `||name^` tolerated, and
/// the patterns `||glob*.name^` and `/regex/`).
pub fn parse_domain_line(line: &str) -> Line {
    let body = strip_comment(line);
    if body.is_empty() || body.starts_with('!') {
        return Line::Empty;
    }
    match super::pattern::parse(body) {
        Some(Ok(p)) => return Line::Pattern(p),
        Some(Err(())) => return Line::Bad,
        None => {}
    }
    let mut body = body;
    let mut subdomains_only = false;
    if let Some(rest) = body.strip_prefix("*.") {
        body = rest;
        subdomains_only = true;
    } else if let Some(rest) = body.strip_prefix("||").and_then(|r| r.strip_suffix('^')) {
        body = rest;
    }
    if body.split_whitespace().nth(1).is_some() {
        return Line::Bad;
    }
    match normalize_domain(body) {
        Some(name) => Line::Rules(vec![DomainRule {
            name,
            subdomains_only,
        }]),
        None => Line::Bad,
    }
}

/// Lowercase, strip the trailing dot, convert IDN to punycode and check the syntax.
/// Returns `None` for anything that is not a host name (IPs, URLs, wildcards inside).
pub(crate) fn normalize_domain(raw: &str) -> Option<String> {
    let raw = raw.trim().trim_end_matches('.');
    if raw.is_empty() || raw.len() > 253 {
        return None;
    }
    let ascii = if raw.is_ascii() {
        raw.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(raw).ok()?
    };
    if ascii.parse::<std::net::Ipv4Addr>().is_ok() {
        return None;
    }
    let valid = ascii.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    });
    valid.then_some(ascii)
}

/// Header fields of our own blocklist files (`# Key: value` lines at the top).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListHeader {
    pub(crate) title: Option<String>,
    /// `# Category:`: the category of its rules.
    pub category: Option<String>,
    /// `# Action:`: the category's default action (`block` or `log`).
    pub action: Option<String>,
    pub(crate) sources: Option<String>,
    pub(crate) reviewed: Option<String>,
}

/// Read the `# Key: value` header of a list (stops at the first non-comment line).
pub fn read_header(text: &str) -> ListHeader {
    let mut h = ListHeader::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some(rest) = line.strip_prefix('#').or_else(|| line.strip_prefix('!')) else {
            break;
        };
        let Some((key, value)) = rest.split_once(':') else {
            continue;
        };
        let value = Some(value.trim().to_string());
        match key.trim().to_ascii_lowercase().as_str() {
            "title" => h.title = value,
            "category" => h.category = value,
            "action" => h.action = value,
            "sources" => h.sources = value,
            "reviewed" | "last modified" | "date" => h.reviewed = value,
            _ => {}
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: Line) -> Vec<String> {
        match line {
            Line::Rules(r) => r.into_iter().map(|r| r.name).collect(),
            other => panic!("expected rules, got {other:?}"),
        }
    }

    #[test]
    fn hosts_lines() {
        assert_eq!(
            names(parse_hosts_line("0.0.0.0 Ads.Example.com # c")),
            ["ads.example.com"]
        );
        assert_eq!(
            names(parse_hosts_line("127.0.0.1  a.com b.com")),
            ["a.com", "b.com"]
        );
        assert_eq!(
            names(parse_hosts_line(":: tracker.example.")),
            ["tracker.example"]
        );
        assert_eq!(parse_hosts_line("127.0.0.1 localhost"), Line::Empty);
        assert_eq!(parse_hosts_line("# only a comment"), Line::Empty);
        assert_eq!(parse_hosts_line("notanip a.com"), Line::Bad);
        assert_eq!(parse_hosts_line("0.0.0.0 bad/name"), Line::Bad);
    }

    #[test]
    fn domain_lines() {
        assert_eq!(
            names(parse_domain_line("Connect.Facebook.NET  # pixel")),
            ["connect.facebook.net"]
        );
        assert_eq!(
            names(parse_domain_line("||an.facebook.com^")),
            ["an.facebook.com"]
        );
        assert_eq!(
            names(parse_domain_line("bücher.example")),
            ["xn--bcher-kva.example"]
        );
        match parse_domain_line("*.wild.example") {
            Line::Rules(r) => assert!(r[0].subdomains_only),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_domain_line("two words"), Line::Bad);
        assert_eq!(parse_domain_line("http://x.com/path"), Line::Bad);
        assert_eq!(parse_domain_line("1.2.3.4"), Line::Bad);
        assert_eq!(parse_domain_line(""), Line::Empty);
        match parse_domain_line("||sonar*.xx.fbcdn.net^   # reason: probe") {
            Line::Pattern(p) => {
                assert_eq!(
                    (p.key(), p.text()),
                    ("xx.fbcdn.net", "||sonar*.xx.fbcdn.net^")
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_domain_line("||sonar*^"), Line::Bad);
        assert_eq!(parse_domain_line("/sonar/"), Line::Bad);
    }

    #[test]
    fn detects_formats() {
        assert_eq!(
            detect_format("[Adblock Plus 2.0]\n||x.com^\n"),
            ListFormat::Abp
        );
        assert_eq!(
            detect_format("# c\n0.0.0.0 a.com\n0.0.0.0 b.com\n"),
            ListFormat::Hosts
        );
        assert_eq!(detect_format("# c\na.com\nb.com\n"), ListFormat::Domains);
        assert_eq!(detect_format("||a.com^\n@@||b.com^\n"), ListFormat::Abp);
    }

    #[test]
    fn header() {
        let h = read_header(
            "# Title: Meta Pixel\n# Category: pixel\n# Action: block\n#\nconnect.facebook.net\n# Title: late\n",
        );
        assert_eq!(h.title.as_deref(), Some("Meta Pixel"));
        assert_eq!(h.category.as_deref(), Some("pixel"));
        assert_eq!(h.action.as_deref(), Some("block"));
    }
}
