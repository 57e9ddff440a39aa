//! The compact form of a large hosts or domain list: `fst` maps (BurntSushi's `fst`
//! crate) keyed by the *reversed* names (`moc.koobecaf` for `facebook.com`), so the
//! suffixes of a query name are found in one walk over its bytes from the right. The
//! value packs the list lines of the name's rules (`name` in the low 32 bits, `*.name`
//! in the high 32 bits, 0 for none), so every verdict still names its list and line.
//!
//! A list is split by the last byte of its names into up to [`MAX_PARTS`] maps, built
//! on as many threads: a name and all its suffixes end in the same byte, so a check
//! still walks one map. The compiled bytes are a 256-byte table (last byte -> part,
//! [`NO_PART`] for none), the number of parts (u32), their lengths (u64 each, all
//! little-endian), then the maps.
//!
//! The list is parsed from its bytes without a `String` per line: names are lowercased
//! and reversed into one arena, sorted by an MSD radix sort on eight bytes at a time
//! (`sorted`), and each map is built in one pass. Lines the fast path cannot read
//! exactly as `parse` does (non-ASCII, `*.`, `||`, patterns) go through the line
//! parsers of `parse`, so the rules are the same either way.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use super::parse::{self, Line, ListFormat};

/// Most maps a list is split into (threads that build them).
const MAX_PARTS: usize = 4;
/// Below this many names a list is one map, built on the calling thread.
const SPLIT_ABOVE: usize = 100_000;
/// The table entry of a last byte no name ends in.
const NO_PART: u8 = u8::MAX;
/// The table and the part count.
const TABLE: usize = 256 + 4;

/// Bytes of a compiled list (or of one of its maps).
pub(crate) enum Bytes {
    /// Built in memory (no cache directory, or it could not be written); each map gets
    /// its own copy, so a check reads it with no indirection (as fast as one map was).
    Owned(Vec<u8>),
    /// `map[start..end]` of a mapped cache file (see `cache`).
    Mapped {
        /// The mapped file.
        map: Arc<memmap2::Mmap>,
        /// Where the bytes start in it.
        start: usize,
        /// Where they end.
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

impl Bytes {
    /// Bytes built in memory.
    pub(crate) fn owned(v: Vec<u8>) -> Bytes {
        Bytes::Owned(v)
    }

    /// `map[start..end]` of a mapped cache file.
    pub(crate) fn mapped(map: Arc<memmap2::Mmap>, start: usize, end: usize) -> Bytes {
        Bytes::Mapped { map, start, end }
    }

    /// `self[from..to]`, if it is inside (copied when in memory, shared when mapped).
    fn slice(&self, from: usize, to: usize) -> Option<Bytes> {
        let part = self.as_ref().get(from..to)?;
        Some(match self {
            Bytes::Owned(_) => Bytes::Owned(part.to_vec()),
            Bytes::Mapped { map, start, .. } => Bytes::Mapped {
                map: map.clone(),
                start: start + from,
                end: start + to,
            },
        })
    }
}

/// One compiled list in the filter: its list id and its name maps.
pub(crate) struct CompactList {
    pub(crate) list: u16,
    /// The map of the names that end in each byte ([`NO_PART`]: none).
    part_of: [u8; 256],
    parts: Vec<fst::raw::Fst<Bytes>>,
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
    /// A list's maps over its compiled `bytes`; `None` when they are not what
    /// `Compiler::finish` writes.
    pub(crate) fn new(list: u16, bytes: Bytes) -> Option<CompactList> {
        let b = bytes.as_ref();
        let mut part_of = [NO_PART; 256];
        part_of.copy_from_slice(b.get(..256)?);
        let n = u32::from_le_bytes(b.get(256..TABLE)?.try_into().ok()?) as usize;
        if n > MAX_PARTS || part_of.iter().any(|&p| p != NO_PART && p as usize >= n) {
            return None;
        }
        let mut at = TABLE.checked_add(n.checked_mul(8)?)?;
        let mut parts = Vec::with_capacity(n);
        for i in 0..n {
            let len = b.get(TABLE + 8 * i..TABLE + 8 * i + 8)?;
            let len = usize::try_from(u64::from_le_bytes(len.try_into().ok()?)).ok()?;
            let end = at.checked_add(len)?;
            parts.push(fst::raw::Fst::new(bytes.slice(at, end)?).ok()?);
            at = end;
        }
        (at == b.len()).then_some(CompactList {
            list,
            part_of,
            parts,
        })
    }

    /// Names in the maps.
    pub(crate) fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }

    /// Push every name of this list that `name` ends in at a label boundary, from the
    /// shortest suffix to the longest (one walk over `name` from its last byte).
    pub(crate) fn suffixes(&self, idx: u16, name: &[u8], out: &mut impl Extend<Hit>) {
        let Some(fst) = name
            .last()
            .and_then(|&b| self.parts.get(self.part_of[b as usize] as usize))
        else {
            return;
        };
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
    /// The maps of reversed names, with their table (see the module text).
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

impl Entry {
    fn name<'a>(&self, arena: &'a [u8]) -> &'a [u8] {
        arena
            .get(self.off as usize..self.off as usize + self.len as usize)
            .unwrap_or_default()
    }
}

/// Reads a list line by line into names; `finish` sorts them and builds the map.
pub(crate) struct Compiler {
    hosts: bool,
    arena: Vec<u8>,
    entries: Vec<Entry>,
    line: u32,
    out: Compiled,
    /// The unfinished last line of the bytes given to `feed` so far.
    partial: Vec<u8>,
    /// Lists with more names than this are split (see the module text).
    split_above: usize,
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

/// The address of a hosts line: the two usual ones without the parser.
fn is_ip(w: &[u8]) -> bool {
    w == b"0.0.0.0"
        || w == b"127.0.0.1"
        || std::str::from_utf8(w).is_ok_and(|s| s.parse::<IpAddr>().is_ok())
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
            partial: Vec::new(),
            split_above: SPLIT_ABOVE,
        }
    }

    /// Read the next bytes of the list, in chunks of any size: whole lines are read at
    /// once, the rest waits for the next chunk or `end` (lines as `str::lines` splits them).
    pub(crate) fn feed(&mut self, mut chunk: &[u8]) {
        if !self.partial.is_empty() {
            let Some(i) = memchr::memchr(b'\n', chunk) else {
                self.partial.extend_from_slice(chunk);
                return;
            };
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&chunk[..i]);
            self.line(&line);
            line.clear();
            self.partial = line;
            chunk = &chunk[i + 1..];
        }
        for line in memchr::memchr_iter(b'\n', chunk).scan(0, |from, i| {
            let line = &chunk[*from..i];
            *from = i + 1;
            Some(line)
        }) {
            self.line(line);
        }
        let tail = match memchr::memrchr(b'\n', chunk) {
            Some(i) => &chunk[i + 1..],
            None => chunk,
        };
        self.partial.extend_from_slice(tail);
    }

    /// The end of the list: read its last line if it has no `\n`.
    pub(crate) fn end(&mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line);
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
        let mut comment = None;
        for (i, &b) in line.iter().enumerate() {
            if !((0x20..0x7f).contains(&b) || b == b'\t' || b == 0x0c) {
                return self.slow(line);
            }
            if b == b'#' && comment.is_none() {
                comment = Some(i);
            }
        }
        let body = match comment {
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
        if !is_ip(ip) {
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

    /// `normalize_domain` of `parse` on an ASCII word, lowercased and reversed straight
    /// into the arena in one pass; false (and the arena as it was) if the word is not a
    /// host name.
    fn push_name(&mut self, w: &[u8], sub: bool) -> bool {
        let mut w = trim(w);
        while let [rest @ .., b'.'] = w {
            w = rest;
        }
        if w.is_empty() || w.len() > 253 {
            return false;
        }
        let start = self.arena.len();
        let Ok(off) = u32::try_from(start) else {
            // Past 4 GiB of names: a bad line rather than a wrapped offset.
            return false;
        };
        self.arena.reserve(w.len());
        let (mut label, mut numeric, mut valid) = (0usize, true, true);
        for &b in w.iter().rev() {
            let c = b.to_ascii_lowercase();
            if c == b'.' {
                valid &= label > 0;
                label = 0;
            } else {
                numeric &= c.is_ascii_digit();
                valid &= c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_';
                label += 1;
                valid &= label <= 63;
            }
            self.arena.push(c);
        }
        valid &= label > 0;
        // An IPv4 address is not a host name (only digits and dots can be one).
        if numeric && std::str::from_utf8(w).is_ok_and(|s| s.parse::<Ipv4Addr>().is_ok()) {
            valid = false;
        }
        if !valid {
            self.arena.truncate(start);
            return false;
        }
        self.out.rules += 1;
        self.entries.push(Entry {
            off,
            len: w.len() as u8,
            sub,
            line: self.line,
        });
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

    /// Sort the names and build the maps: for each name, the first line of its `name`
    /// rule and of its `*.name` rule (a list naming a host twice adds nothing).
    pub(crate) fn finish(mut self) -> Compiled {
        let t = std::time::Instant::now();
        let arena = std::mem::take(&mut self.arena);
        let entries = std::mem::take(&mut self.entries);
        // Split by last byte (first of the reversed name), the largest groups first
        // onto the smallest part.
        let mut by_byte = [0usize; 256];
        for e in &entries {
            by_byte[arena[e.off as usize] as usize] += 1;
        }
        let n = if entries.len() <= self.split_above {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_PARTS))
        };
        let mut bytes: Vec<usize> = (0..256).filter(|&b| by_byte[b] > 0).collect();
        bytes.sort_unstable_by_key(|&b| std::cmp::Reverse(by_byte[b]));
        let mut part_of = [NO_PART; 256];
        let mut size = vec![0usize; n];
        for b in bytes {
            let p = (0..n).min_by_key(|&p| size[p]).unwrap_or(0);
            part_of[b] = p as u8;
            size[p] += by_byte[b];
        }
        // Parts that got no byte (fewer last bytes than threads) are dropped.
        let used: Vec<usize> = (0..n).filter(|&p| size[p] > 0).collect();
        for p in part_of.iter_mut().filter(|p| **p != NO_PART) {
            *p = used.iter().position(|&u| u == *p as usize).unwrap_or(0) as u8;
        }
        // Each part picks its entries (in line order), sorts them and builds its map.
        let build = |p: usize| {
            let mut order = Vec::with_capacity(size[used[p]]);
            for (i, e) in entries.iter().enumerate() {
                if part_of[arena[e.off as usize] as usize] as usize == p {
                    order.push((0, i as u32));
                }
            }
            build_map(&arena, &entries, order)
        };
        let maps: Vec<Vec<u8>> = if used.len() <= 1 {
            (0..used.len()).map(build).collect()
        } else {
            std::thread::scope(|s| {
                let spawned: Vec<_> = (1..used.len())
                    .map(|p| {
                        std::thread::Builder::new()
                            .name("list-build".into())
                            .spawn_scoped(s, move || build(p))
                            .map_err(|_| p)
                    })
                    .collect();
                let mut maps = vec![build(0)];
                for h in spawned {
                    // Built here if its thread could not be started.
                    maps.push(match h {
                        Ok(h) => h.join().unwrap_or_default(),
                        Err(p) => build(p),
                    });
                }
                maps
            })
        };
        drop(entries);
        drop(arena);
        let mut out = self.out;
        let len: usize = maps.iter().map(Vec::len).sum();
        out.fst = Vec::with_capacity(TABLE + 8 * maps.len() + len);
        out.fst.extend_from_slice(&part_of);
        out.fst
            .extend_from_slice(&(maps.len() as u32).to_le_bytes());
        for m in &maps {
            out.fst.extend_from_slice(&(m.len() as u64).to_le_bytes());
        }
        for m in maps {
            out.fst.extend_from_slice(&m);
        }
        tracing::debug!(
            names = out.rules,
            parts = used.len(),
            sort_and_build_ms = t.elapsed().as_millis() as u64,
            "list names sorted and their maps built"
        );
        out
    }
}

/// Sort the entries `order` names and build their map.
fn build_map(arena: &[u8], entries: &[Entry], mut order: Vec<(u64, u32)>) -> Vec<u8> {
    let mut tmp = vec![(0, 0); order.len()];
    sort_from(arena, entries, &mut order, &mut tmp, 0);
    drop(tmp);
    // The keys are no longer needed: a quarter of the memory while the map is built.
    let order: Vec<u32> = order.into_iter().map(|(_, i)| i).collect();
    let mut builder = fst::raw::Builder::memory();
    let mut i = 0;
    while let Some(&first) = order.get(i) {
        let k = entries[first as usize].name(arena);
        let (mut exact, mut sub) = (0u32, 0u32);
        // Equal names are in line order (`sort_from`).
        while let Some(&at) = order.get(i) {
            let e = entries[at as usize];
            if at != first && e.name(arena) != k {
                break;
            }
            let slot = if e.sub { &mut sub } else { &mut exact };
            if *slot == 0 {
                *slot = e.line;
            }
            i += 1;
        }
        // Keys are sorted and distinct: insert cannot fail on order.
        let _ = builder.insert(k, u64::from(exact) | (u64::from(sub) << 32));
    }
    builder.into_inner().unwrap_or_default()
}

/// Eight bytes of `name` from `depth` on, big-endian, zero past its end (no name holds
/// a zero byte, so a name sorts before its extensions): a sort key with no indirection.
fn key8(name: &[u8], depth: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(rest) = name.get(depth..) {
        let n = rest.len().min(8);
        b[..n].copy_from_slice(&rest[..n]);
    }
    u64::from_be_bytes(b)
}

/// Sorting a part's entries in the order of their names, then of their position
/// (their line): an MSD radix sort on eight name bytes at a time. Each round sorts
/// `(key, index)` pairs (one array, integer keys, no indirection) with a stable LSD
/// radix sort on the key's bytes; only runs that share the eight bytes and go on past
/// them are sorted again on the next eight.
fn sort_from(
    arena: &[u8],
    entries: &[Entry],
    order: &mut [(u64, u32)],
    tmp: &mut [(u64, u32)],
    depth: usize,
) {
    for o in order.iter_mut() {
        o.0 = key8(entries[o.1 as usize].name(arena), depth);
    }
    radix_sort(order, tmp);
    let mut i = 0;
    while i < order.len() {
        let key = order[i].0;
        let mut j = i + 1;
        let mut longer = entries[order[i].1 as usize].len as usize > depth + 8;
        while j < order.len() && order[j].0 == key {
            longer |= entries[order[j].1 as usize].len as usize > depth + 8;
            j += 1;
        }
        if j - i > 1 && longer {
            sort_from(arena, entries, &mut order[i..j], &mut tmp[i..j], depth + 8);
        }
        i = j;
    }
}

/// Sort `v` by key, stably (equal keys keep their order: entries stay in line order),
/// byte by byte from the lowest; a byte every key shares costs no pass. `tmp` is as
/// long as `v`.
fn radix_sort(v: &mut [(u64, u32)], tmp: &mut [(u64, u32)]) {
    if v.len() <= 256 {
        // Small runs: insertion order kept by sorting on the index too.
        v.sort_unstable();
        return;
    }
    let mut counts = [[0u32; 256]; 8];
    for &(k, _) in v.iter() {
        for (b, c) in counts.iter_mut().enumerate() {
            c[(k >> (b * 8)) as u8 as usize] += 1;
        }
    }
    let n = v.len() as u32;
    let (mut src, mut dst) = (&mut *v, &mut tmp[..]);
    let mut in_tmp = false;
    for (b, c) in counts.iter().enumerate() {
        if c.contains(&n) {
            continue;
        }
        let mut at = [0u32; 256];
        let mut sum = 0;
        for (a, &c) in at.iter_mut().zip(c.iter()) {
            *a = sum;
            sum += c;
        }
        for &x in src.iter() {
            let slot = &mut at[(x.0 >> (b * 8)) as u8 as usize];
            dst[*slot as usize] = x;
            *slot += 1;
        }
        std::mem::swap(&mut src, &mut dst);
        in_tmp = !in_tmp;
    }
    if in_tmp {
        dst.copy_from_slice(src);
    }
}

/// Compile `text` (hosts or domains) in memory.
pub(crate) fn compile_text(text: &str, format: ListFormat) -> Compiled {
    let mut c = Compiler::new(format);
    c.feed(text.as_bytes());
    c.end();
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(c: &CompactList, name: &str) -> Vec<(usize, Option<u32>, Option<u32>)> {
        let mut hits = Vec::new();
        c.suffixes(0, name.as_bytes(), &mut hits);
        hits.iter()
            .map(|h| (h.start, h.exact(), h.subdomains()))
            .collect()
    }

    /// A list split into parts answers as the same list in one map, and the radix sort
    /// keeps the first line of a name listed twice.
    #[test]
    fn split_maps_answer_as_one() {
        let mut text = String::new();
        for i in 0..3000 {
            let tld = ["com", "net", "org", "example", "io", "x"][i % 6];
            text.push_str(&format!("0.0.0.0 a{i}.host{}.{tld} b.{tld}\n", i % 37));
            if i % 7 == 0 {
                text.push_str(&format!("0.0.0.0 A{i}.HOST{}.{tld}\n", i % 37));
            }
        }
        let compile = |split_above| {
            let mut c = Compiler::new(ListFormat::Hosts);
            c.split_above = split_above;
            c.feed(text.as_bytes());
            c.end();
            c.finish()
        };
        let (one, split) = (compile(usize::MAX), compile(0));
        assert_eq!((one.rules, split.rules), (3000 * 2 + 429, 3000 * 2 + 429));
        let one = CompactList::new(0, Bytes::owned(one.fst)).expect("one map");
        let split = CompactList::new(0, Bytes::owned(split.fst)).expect("split maps");
        assert_eq!(one.parts.len(), 1);
        assert!(
            split.parts.len() > 1
                || std::thread::available_parallelism().map_or(1, |n| n.get()) == 1
        );
        assert_eq!((one.len(), split.len()), (3000 + 6, 3000 + 6));
        for i in 0..3000 {
            let tld = ["com", "net", "org", "example", "io", "x"][i % 6];
            for name in [
                format!("a{i}.host{}.{tld}", i % 37),
                format!("x.a{i}.host{}.{tld}", i % 37),
                format!("b.{tld}"),
                format!("c.{tld}"),
            ] {
                assert_eq!(lines_of(&one, &name), lines_of(&split, &name), "{name}");
            }
        }
        // Listed on line 1 (b.com) and on 8 and 9: the first line is kept.
        assert_eq!(lines_of(&split, "a0.host0.com"), [(0, Some(1), None)]);
        assert_eq!(lines_of(&split, "b.com"), [(0, Some(1), None)]);
        assert!(lines_of(&split, "").is_empty());
        assert!(lines_of(&split, "unlisted.zz").is_empty());
    }

    #[test]
    fn bad_compiled_bytes_are_refused() {
        let c = compile_text("0.0.0.0 a.example\n", ListFormat::Hosts);
        assert!(CompactList::new(0, Bytes::owned(c.fst.clone())).is_some());
        for n in 0..c.fst.len() {
            assert!(CompactList::new(0, Bytes::owned(c.fst[..n].to_vec())).is_none());
        }
        let mut bad = c.fst.clone();
        bad[b'e' as usize] = 3;
        assert!(CompactList::new(0, Bytes::owned(bad)).is_none());
    }
}
