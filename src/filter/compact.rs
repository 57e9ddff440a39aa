//! The compact form of a large hosts or domain list: one `fst` map (BurntSushi's `fst`
//! crate) keyed by the *reversed* names (`moc.koobecaf` for `facebook.com`), so the
//! suffixes of a query name are found in one walk over its bytes from the right. The
//! value packs the list lines of the name's rules (`name` in the low 32 bits, `*.name`
//! in the high 32 bits, 0 for none), so every verdict still names its list and line.
//!
//! The list is parsed from its bytes without a `String` per line: names are lowercased
//! into one arena, sorted with `sort_unstable`, and the map is built in one pass. Lines
//! the fast path cannot read exactly as `parse` does (non-ASCII, `*.`, `||`, patterns)
//! go through the line parsers of `parse`, so the rules are the same either way.

use std::net::{IpAddr, Ipv4Addr};

use super::parse::{self, Line, ListFormat};

/// The bytes under an `fst`: built in memory, or a slice of a mapped cache file.
pub(crate) enum Bytes {
    /// Built in memory (no cache directory, or it could not be written).
    Owned(Vec<u8>),
    /// `map[start..end]` of a cache file (see `cache`).
    Mapped {
        /// The mapped file.
        map: std::sync::Arc<memmap2::Mmap>,
        /// Where the fst starts in it.
        start: usize,
        /// Where it ends.
        end: usize,
    },
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Mapped { map, start, end } => map.get(*start..*end).unwrap_or_default(),
        }
    }
}

/// One compiled list in the filter: its list id and its name map.
pub(crate) struct CompactList {
    pub(crate) list: u16,
    fst: fst::raw::Fst<Bytes>,
}

/// A name of the list that is a suffix of the checked name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hit {
    /// Where the suffix starts in the checked name.
    pub(crate) start: usize,
    /// Index of the list in `Filter::compact` (lists are in id order).
    pub(crate) idx: u16,
    /// Packed lines: `name` low, `*.name` high.
    pub(crate) lines: u64,
}

impl Hit {
    /// Line of the `name` rule, if any.
    pub(crate) fn exact(&self) -> Option<u32> {
        Some(self.lines as u32).filter(|&l| l != 0)
    }

    /// Line of the `*.name` rule, if any.
    pub(crate) fn subdomains(&self) -> Option<u32> {
        Some((self.lines >> 32) as u32).filter(|&l| l != 0)
    }
}

impl CompactList {
    /// A list's map over `bytes`; `None` when they are not an fst.
    pub(crate) fn new(list: u16, bytes: Bytes) -> Option<CompactList> {
        let fst = fst::raw::Fst::new(bytes).ok()?;
        Some(CompactList { list, fst })
    }

    /// Names in the map.
    pub(crate) fn len(&self) -> usize {
        self.fst.len()
    }

    /// Push every name of this list that `name` ends in at a label boundary, from the
    /// shortest suffix to the longest (one walk over `name` from its last byte).
    pub(crate) fn suffixes(&self, idx: u16, name: &[u8], out: &mut impl Extend<Hit>) {
        let fst = &self.fst;
        let mut node = fst.root();
        let mut out_sum = fst::raw::Output::zero();
        let mut i = name.len();
        while i > 0 {
            let b = name[i - 1];
            let Some(t) = node.find_input(b) else {
                return;
            };
            let t = node.transition(t);
            out_sum = out_sum.cat(t.out);
            node = fst.node(t.addr);
            i -= 1;
            if (i == 0 || name[i - 1] == b'.') && node.is_final() {
                out.extend(std::iter::once(Hit {
                    start: i,
                    idx,
                    lines: out_sum.cat(node.final_output()).value(),
                }));
            }
        }
    }
}

/// What compiling a list's lines gave: the map bytes, counts and pattern lines.
#[derive(Debug, Default)]
pub(crate) struct Compiled {
    /// The fst of reversed names.
    pub(crate) fst: Vec<u8>,
    /// Rules read (as `Filter::build` counts them: every name of a hosts line).
    pub(crate) rules: usize,
    /// Lines that could not be read.
    pub(crate) bad_lines: usize,
    /// Pattern rules (`||glob^`, `/regex/`), with their 1-based line, as written.
    pub(crate) patterns: Vec<(u32, String)>,
}

/// One name read: where its reversed bytes are in the arena and its line.
#[derive(Clone, Copy)]
struct Entry {
    off: u32,
    len: u8,
    sub: bool,
    line: u32,
}

/// Reads a list line by line into names; `finish` sorts them and builds the map.
pub(crate) struct Compiler {
    hosts: bool,
    arena: Vec<u8>,
    entries: Vec<Entry>,
    line: u32,
    out: Compiled,
    word: Vec<u8>,
}

/// Host names that hosts files map to themselves; never rules (as in `parse`).
fn hosts_ignored(w: &[u8]) -> bool {
    const IGNORED: &[&[u8]] = &[
        b"localhost",
        b"localhost.localdomain",
        b"local",
        b"broadcasthost",
        b"ip6-localhost",
        b"ip6-loopback",
        b"ip6-localnet",
        b"ip6-mcastprefix",
        b"ip6-allnodes",
        b"ip6-allrouters",
        b"ip6-allhosts",
        b"0.0.0.0",
    ];
    IGNORED.iter().any(|i| i.eq_ignore_ascii_case(w))
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0c)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s
        && is_space(*first)
    {
        s = rest;
    }
    while let [rest @ .., last] = s
        && is_space(*last)
    {
        s = rest;
    }
    s
}

impl Compiler {
    /// A compiler for a list of `format` (`Hosts` or `Domains`).
    pub(crate) fn new(format: ListFormat) -> Compiler {
        Compiler {
            hosts: format == ListFormat::Hosts,
            arena: Vec::new(),
            entries: Vec::new(),
            line: 0,
            out: Compiled::default(),
            word: Vec::with_capacity(256),
        }
    }

    /// Read the next line (without its `\n`).
    pub(crate) fn line(&mut self, mut line: &[u8]) {
        self.line += 1;
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        // The fast path reads printable ASCII, tabs and form feeds; anything else goes
        // through `parse` (which trims Unicode blanks, converts IDNs, ...).
        if !line
            .iter()
            .all(|&b| (0x20..0x7f).contains(&b) || b == b'\t' || b == 0x0c)
        {
            return self.slow(line);
        }
        let body = match line.iter().position(|&b| b == b'#') {
            Some(i) => trim(&line[..i]),
            None => trim(line),
        };
        if body.is_empty() {
            return;
        }
        if self.hosts {
            self.hosts_line(body);
        } else {
            self.domain_line(line, body);
        }
    }

    fn hosts_line(&mut self, body: &[u8]) {
        let mut words = body.split(|&b| is_space(b)).filter(|w| !w.is_empty());
        let Some(ip) = words.next() else { return };
        // ASCII checked by the caller.
        let ip_ok = std::str::from_utf8(ip).is_ok_and(|s| s.parse::<IpAddr>().is_ok());
        if !ip_ok {
            self.out.bad_lines += 1;
            return;
        }
        let (mut any, mut bad) = (false, false);
        for w in words {
            if hosts_ignored(w) {
                continue;
            }
            if self.push_name(w, false) {
                any = true;
            } else {
                bad = true;
            }
        }
        if !any && bad {
            self.out.bad_lines += 1;
        }
    }

    fn domain_line(&mut self, line: &[u8], body: &[u8]) {
        if body[0] == b'!' {
            return;
        }
        let plain = body
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !plain {
            return self.slow(line);
        }
        if !self.push_name(body, false) {
            self.out.bad_lines += 1;
        }
    }

    /// A line `parse` reads: its rules are taken as they are.
    fn slow(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let parsed = if self.hosts {
            parse::parse_hosts_line(&text)
        } else {
            parse::parse_domain_line(&text)
        };
        match parsed {
            Line::Empty => {}
            Line::Bad => self.out.bad_lines += 1,
            Line::Rules(rules) => {
                for r in rules {
                    self.push_normalized(r.name.as_bytes(), r.subdomains_only);
                }
            }
            Line::Pattern(p) => {
                self.out.rules += 1;
                self.out.patterns.push((self.line, p.text().to_string()));
            }
        }
    }

    /// `normalize_domain` of `parse` on an ASCII word, into the arena; false if the
    /// word is not a host name.
    fn push_name(&mut self, w: &[u8], sub: bool) -> bool {
        let mut w = trim(w);
        while let [rest @ .., b'.'] = w {
            w = rest;
        }
        if w.is_empty() || w.len() > 253 {
            return false;
        }
        self.word.clear();
        self.word.extend(w.iter().map(u8::to_ascii_lowercase));
        let is_ip = std::str::from_utf8(&self.word).is_ok_and(|s| s.parse::<Ipv4Addr>().is_ok());
        if is_ip {
            return false;
        }
        let valid = self.word.split(|&b| b == b'.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.iter().all(|&b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                })
        });
        if !valid {
            return false;
        }
        let word = std::mem::take(&mut self.word);
        self.push_normalized(&word, sub);
        self.word = word;
        true
    }

    /// A name already lowercase and checked.
    fn push_normalized(&mut self, name: &[u8], sub: bool) {
        self.out.rules += 1;
        let (Ok(off), Ok(len)) = (u32::try_from(self.arena.len()), u8::try_from(name.len())) else {
            // Past 4 GiB of names: counted as a bad line rather than wrapped.
            self.out.rules -= 1;
            self.out.bad_lines += 1;
            return;
        };
        self.arena.extend(name.iter().rev());
        self.entries.push(Entry {
            off,
            len,
            sub,
            line: self.line,
        });
    }

    /// Sort the names and build the map: for each name, the first line of its `name`
    /// rule and of its `*.name` rule (a list naming a host twice adds nothing).
    pub(crate) fn finish(mut self) -> Compiled {
        let arena = std::mem::take(&mut self.arena);
        let key = |e: &Entry| &arena[e.off as usize..e.off as usize + e.len as usize];
        self.entries
            .sort_unstable_by(|a, b| key(a).cmp(key(b)).then(a.line.cmp(&b.line)));
        let mut builder = fst::raw::Builder::memory();
        let mut i = 0;
        while i < self.entries.len() {
            let k = key(&self.entries[i]);
            let (mut exact, mut sub) = (0u32, 0u32);
            while i < self.entries.len() && key(&self.entries[i]) == k {
                let e = self.entries[i];
                let slot = if e.sub { &mut sub } else { &mut exact };
                if *slot == 0 {
                    *slot = e.line;
                }
                i += 1;
            }
            // Keys are sorted and distinct: insert cannot fail on order.
            let _ = builder.insert(k, u64::from(exact) | (u64::from(sub) << 32));
        }
        drop(std::mem::take(&mut self.entries));
        drop(arena);
        let mut out = self.out;
        out.fst = builder.into_inner().unwrap_or_default();
        out
    }
}

/// Compile `text` (hosts or domains) in memory.
pub(crate) fn compile_text(text: &str, format: ListFormat) -> Compiled {
    let mut c = Compiler::new(format);
    for line in text.lines() {
        c.line(line.as_bytes());
    }
    c.finish()
}
