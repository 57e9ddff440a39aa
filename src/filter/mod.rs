//! The compiled filter: for a query name, which rules of which lists match it, and
//! the verdict under a device's action table.
//!
//! Hosts and plain-domain lists go into one suffix map (a rule covers its name and
//! every subdomain, never a substring); Adblock Plus lists go into an `adblock`
//! engine. A verdict takes, among every matching rule, the strongest action under
//! the device's table (`allow` > `block` > `log`) and reports the most specific
//! rule of that action, so `graph.facebook.com` keeps its own category even though
//! `facebook.com` matches too.
//!
//! Pattern rules of domain lists (`||sonar*.xx.fbcdn.net^`, `/regex$/`) are indexed by
//! their literal suffix: the suffix map marks those suffixes, so a name tries patterns
//! only when one of its suffixes carries the mark, on the same lookups as every name.
//! A pattern counts as specific as its literal suffix plus one label: it is tried after
//! the rules of longer suffixes and before those of its suffix and shorter ones.

mod cache;
mod compact;
pub mod parse;
mod pattern;

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use adblock::lists::{FilterFormat, ParseOptions, ParsedLine, RuleTypes};
use serde::Serialize;

use crate::config::ListedName;
use crate::policy::{Action, Categories, CategoryId};
use parse::Line;
pub use parse::ListFormat;

/// A list to compile, with its text already read.
#[derive(Debug, Clone)]
pub struct ListSource {
    /// Short name shown in verdicts (`pixel.txt`, a file path, a URL).
    pub name: String,
    /// Category of its rules (`pixel`, `meta-ai`, ...).
    pub category: String,
    /// Where it came from: `embedded`, a path or a URL.
    pub origin: String,
    /// How its lines are written (hosts, domains, Adblock Plus, or detected).
    pub format: ListFormat,
    /// The category action the list declares in its header, if any.
    pub default_action: Option<Action>,
    /// The list's whole text (empty when it is read from [`ListSource::file`]).
    pub text: String,
    /// A list file read when the filter is compiled, not before: a large list whose
    /// compiled form is cached is then hashed (streamed) but never held in memory.
    pub file: Option<PathBuf>,
}

/// Hosts and domain lists larger than this (bytes) take the compact form.
pub const COMPACT_ABOVE: usize = 64 * 1024;

/// How [`Filter::build_with`] compiles the lists.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Hosts and domain lists larger than this many bytes are compiled into an `fst`
    /// map; `usize::MAX` keeps every list in the hash map (the tests' reference engine).
    pub compact_above: usize,
    /// Where compiled lists are cached (`<state_dir>/compiled`); `None`: memory only.
    pub cache_dir: Option<PathBuf>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            compact_above: COMPACT_ABOVE,
            cache_dir: None,
        }
    }
}

/// A list ready for `Filter::build_with`: its text, or its compact form.
enum Prepared {
    Text { text: String, format: ListFormat },
    Compact(cache::Meta, compact::Bytes),
}

/// What compiling one list gave.
#[derive(Debug, Clone, Serialize)]
pub struct ListStats {
    /// Short name of the list, as in [`ListSource::name`].
    pub name: String,
    pub(crate) category: String,
    pub(crate) origin: String,
    /// The format it was read as (detected when `auto`).
    pub format: ListFormat,
    /// Rules kept.
    pub rules: usize,
    /// Lines that could not be read (counted and skipped).
    pub bad_lines: usize,
    pub(crate) title: Option<String>,
    pub(crate) sources: Option<String>,
    pub(crate) reviewed: Option<String>,
}

/// Where one rule for a name is written: its list and line (the text stays there).
#[derive(Debug, Clone, Copy)]
struct RuleRef {
    /// [`NO_RULE`] when only patterns are indexed under this name.
    list: u16,
    line: u32,
    /// [`SUBDOMAINS_ONLY`], [`MORE`], [`PATTERNS`] (one byte keeps an entry at 8 bytes).
    flags: u8,
}

/// `*.name`: the rule covers subdomains only.
const SUBDOMAINS_ONLY: u8 = 1;
/// More entries for the same name live in `Filter::overflow`.
const MORE: u8 = 2;
/// Pattern rules are indexed under this name in `Filter::patterns`.
const PATTERNS: u8 = 4;
/// The list id of an entry that only marks a pattern suffix.
const NO_RULE: u16 = u16::MAX;

impl RuleRef {
    fn subdomains_only(&self) -> bool {
        self.flags & SUBDOMAINS_ONLY != 0
    }
}

/// The rule behind a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Match {
    pub(crate) list: u16,
    /// 1-based line in the list.
    pub(crate) line: u32,
    pub(crate) category: CategoryId,
    pub(crate) rule: RuleText,
}

/// The text of a matched rule, without copying for domain rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RuleText {
    /// A domain rule: the suffix of the checked name starting at this byte.
    Suffix { start: usize, subdomains_only: bool },
    /// An Adblock Plus rule, as written in its list.
    Abp(Arc<str>),
    /// A pattern rule of a domain list, as written (`||sonar*.xx.fbcdn.net^`).
    Pattern(Arc<str>),
}

/// The filter's verdict on one name: the rule that matched it, if any, and that rule's
/// action for the device's group. One input of `decide()`, which makes the `Decision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `None` when no rule matched.
    pub(crate) action: Option<Action>,
    pub(crate) matched: Option<Match>,
}

impl Verdict {
    /// Whether a pattern rule (`||glob^`, `/regex/`) matched: the filter bench tells
    /// pattern matches from domain rules by this.
    pub fn by_pattern(&self) -> bool {
        matches!(
            self.matched,
            Some(Match {
                rule: RuleText::Pattern(_),
                ..
            })
        )
    }

    pub(crate) const NONE: Verdict = Verdict {
        action: None,
        matched: None,
    };

    /// Whether the name is blocked.
    pub fn is_block(&self) -> bool {
        self.action == Some(Action::Block)
    }

    /// The rule as written, given the name that was checked.
    pub fn rule_text(&self, checked: &str) -> Option<String> {
        let mut text = None;
        self.write_rule_text(checked, &mut text);
        text
    }

    /// [`Verdict::rule_text`] into `out`, reusing the room of the string it holds.
    pub(crate) fn write_rule_text(&self, checked: &str, out: &mut Option<String>) {
        let Some(m) = &self.matched else {
            *out = None;
            return;
        };
        let text = out.get_or_insert_with(String::new);
        text.clear();
        match &m.rule {
            RuleText::Suffix {
                start,
                subdomains_only,
            } => {
                if *subdomains_only {
                    text.push_str("*.");
                }
                text.push_str(checked.get(*start..).unwrap_or(checked));
            }
            RuleText::Abp(r) | RuleText::Pattern(r) => text.push_str(r),
        }
    }
}

struct Abp {
    engine: adblock::Engine,
    /// `source_index` of the engine -> our list id.
    lists: Vec<u16>,
}

/// Every list compiled into one immutable matcher; rebuilt and swapped on reload.
pub struct Filter {
    categories: Categories,
    list_defaults: HashMap<CategoryId, Action>,
    lists: Vec<ListStats>,
    list_categories: Vec<CategoryId>,
    // Fx: the keys come from our own lists, not from the network, so no flooding risk;
    // SipHash was a tenth of the per-query cost.
    domains: FxHashMap<Box<str>, RuleRef>,
    overflow: FxHashMap<Box<str>, Vec<RuleRef>>,
    /// Pattern rules by their literal suffix (marked [`PATTERNS`] in `domains`).
    patterns: FxHashMap<Box<str>, Vec<pattern::PatternEntry>>,
    /// Large hosts and domain lists, in list order (see `compact`).
    compact: Vec<compact::CompactList>,
    abp: Option<Abp>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("lists", &self.lists.len())
            .field("domains", &self.domains.len())
            .field("patterns", &self.patterns.len())
            .field(
                "compact",
                &self.compact.iter().map(|c| c.len()).sum::<usize>(),
            )
            .field("abp", &self.abp.is_some())
            .finish()
    }
}

impl Filter {
    /// Compile `sources` in memory, large lists in their compact form. Bad lines are
    /// counted in the returned stats, never fatal.
    pub fn build(sources: Vec<ListSource>) -> Filter {
        Filter::build_with(sources, &BuildOptions::default())
    }

    /// Compile `sources` under `opts` (the compiled-list cache of `serve`).
    pub fn build_with(sources: Vec<ListSource>, opts: &BuildOptions) -> Filter {
        let mut categories = Categories::default();
        let mut list_defaults = HashMap::new();
        let mut lists = Vec::with_capacity(sources.len());
        let mut list_categories = Vec::with_capacity(sources.len());
        let mut domains: FxHashMap<Box<str>, RuleRef> = FxHashMap::default();
        let mut overflow: FxHashMap<Box<str>, Vec<RuleRef>> = FxHashMap::default();
        let mut patterns: FxHashMap<Box<str>, Vec<pattern::PatternEntry>> = FxHashMap::default();
        let mut compact = Vec::new();
        let mut abp_set: Option<adblock::FilterSet> = None;
        let mut abp_lists = Vec::new();
        let mut trim = false;
        let mut cached = Vec::new();

        for (idx, mut src) in sources.into_iter().enumerate() {
            let list_id = idx as u16;
            let category = categories.intern(&src.category);
            if let Some(action) = src.default_action {
                list_defaults.entry(category).or_insert(action);
            }
            let (text, format) = match prepare(&mut src, opts, &mut trim, &mut cached) {
                Prepared::Compact(meta, bytes) => {
                    for (line, text) in &meta.patterns {
                        if let Some(Ok(rule)) = pattern::parse(text) {
                            add_pattern(&mut domains, &mut patterns, list_id, *line, rule);
                        }
                    }
                    match compact::CompactList::new(list_id, bytes) {
                        Some(c) => compact.push(c),
                        None => {
                            tracing::warn!(list = %src.name, "compiled list unreadable; its names are skipped")
                        }
                    }
                    lists.push(ListStats {
                        name: src.name,
                        category: src.category,
                        origin: src.origin,
                        format: meta.format,
                        rules: meta.rules,
                        bad_lines: meta.bad_lines,
                        title: meta.title,
                        sources: meta.sources,
                        reviewed: meta.reviewed,
                    });
                    list_categories.push(category);
                    continue;
                }
                Prepared::Text { text, format } => (text, format),
            };
            let header = parse::read_header(&text);
            let (rules, bad_lines) = match format {
                ListFormat::Abp => {
                    let counts = count_abp(&text);
                    let set = abp_set.get_or_insert_with(|| adblock::FilterSet::new(true));
                    set.add_filter_list(
                        text,
                        ParseOptions {
                            rule_types: RuleTypes::NetworkOnly,
                            ..Default::default()
                        },
                    );
                    abp_lists.push(list_id);
                    counts
                }
                _ => {
                    let parse_line = if format == ListFormat::Hosts {
                        parse::parse_hosts_line
                    } else {
                        parse::parse_domain_line
                    };
                    let (mut rules, mut bad) = (0, 0);
                    for (n, line) in text.lines().enumerate() {
                        match parse_line(line) {
                            Line::Empty => {}
                            Line::Bad => bad += 1,
                            Line::Rules(found) => {
                                for r in found {
                                    rules += 1;
                                    let entry = RuleRef {
                                        list: list_id,
                                        line: n as u32 + 1,
                                        flags: if r.subdomains_only {
                                            SUBDOMAINS_ONLY
                                        } else {
                                            0
                                        },
                                    };
                                    insert(&mut domains, &mut overflow, r.name, entry);
                                }
                            }
                            Line::Pattern(rule) => {
                                rules += 1;
                                add_pattern(
                                    &mut domains,
                                    &mut patterns,
                                    list_id,
                                    n as u32 + 1,
                                    rule,
                                );
                            }
                        }
                    }
                    (rules, bad)
                }
            };
            lists.push(ListStats {
                name: src.name,
                category: src.category,
                origin: src.origin,
                format,
                rules,
                bad_lines,
                title: header.title,
                sources: header.sources,
                reviewed: header.reviewed,
            });
            list_categories.push(category);
        }
        domains.shrink_to_fit();
        let abp = abp_set.map(|set| Abp {
            engine: adblock::Engine::new_with_filter_set(set),
            lists: abp_lists,
        });
        if trim {
            release_free_memory();
        }
        if let Some(dir) = &opts.cache_dir {
            cache::prune(dir, &cached);
        }
        Filter {
            categories,
            list_defaults,
            lists,
            list_categories,
            domains,
            overflow,
            patterns,
            compact,
            abp,
        }
    }

    /// The categories the lists and config name, by id.
    pub fn categories(&self) -> &Categories {
        &self.categories
    }

    /// Actions the lists declare in their headers, per category.
    pub fn list_defaults(&self) -> &HashMap<CategoryId, Action> {
        &self.list_defaults
    }

    /// What compiling each list gave, in list order.
    pub fn lists(&self) -> &[ListStats] {
        &self.lists
    }

    pub(crate) fn list(&self, id: u16) -> Option<&ListStats> {
        self.lists.get(id as usize)
    }

    /// Total rules over every list.
    pub fn rule_count(&self) -> usize {
        self.lists.iter().map(|l| l.rules).sum()
    }

    /// Check a name: lowercase ASCII, no trailing dot (see [`normalize_query`]).
    /// `actions` is the device's action table, indexed by category.
    pub fn check(&self, name: &str, actions: &[Action]) -> Verdict {
        // Slots by action: the first (most specific) match of each kind wins its slot.
        let mut slots: [Option<Match>; 3] = [None, None, None];
        let action_of = |list: u16| {
            let cat = self.list_categories[list as usize];
            (
                cat,
                actions.get(cat as usize).copied().unwrap_or(Action::Log),
            )
        };
        // Names of the compact lists that `name` ends in, by suffix then list order.
        let mut hits: smallvec::SmallVec<[compact::Hit; 8]> = smallvec::SmallVec::new();
        for (i, c) in self.compact.iter().enumerate() {
            c.suffixes(i as u16, name.as_bytes(), &mut hits);
        }
        if hits.len() > 1 {
            hits.sort_unstable_by_key(|h| (h.start, h.idx));
        }
        let mut next = 0;
        let mut start = 0usize;
        loop {
            let suffix = &name[start..];
            let mut end = next;
            while end < hits.len() && hits[end].start == start {
                end += 1;
            }
            let mut here = hits[next..end].iter().peekable();
            next = end;
            let entry = self.domains.get(suffix);
            // Patterns under this suffix are more specific than its own rules.
            if let Some(e) = entry
                && e.flags & PATTERNS != 0
                && start > 0
            {
                self.check_patterns(name, start, suffix, &mut slots, &action_of);
            }
            // The rules for this suffix, in list order (hash map and compact lists).
            let mut compact_before = |limit: u16, slots: &mut [Option<Match>; 3]| {
                while let Some(h) = here.next_if(|h| self.compact[h.idx as usize].list < limit) {
                    let list = self.compact[h.idx as usize].list;
                    let sub = h.subdomains().filter(|_| start > 0);
                    let exact = h.exact();
                    let mut one = |line: Option<u32>, subdomains_only: bool| {
                        if let Some(line) = line {
                            consider(slots, &action_of, start, list, line, subdomains_only);
                        }
                    };
                    if sub.unwrap_or(u32::MAX) < exact.unwrap_or(u32::MAX) {
                        one(sub, true);
                        one(exact, false);
                    } else {
                        one(exact, false);
                        one(sub, true);
                    }
                }
            };
            if let Some(e) = entry {
                let mut take = |e: &RuleRef, slots: &mut [Option<Match>; 3]| {
                    if e.list == NO_RULE {
                        return;
                    }
                    compact_before(e.list, slots);
                    if e.subdomains_only() && start == 0 {
                        return;
                    }
                    consider(
                        slots,
                        &action_of,
                        start,
                        e.list,
                        e.line,
                        e.subdomains_only(),
                    );
                };
                take(e, &mut slots);
                if e.flags & MORE != 0 {
                    for e in self.overflow.get(suffix).into_iter().flatten() {
                        take(e, &mut slots);
                    }
                }
            }
            compact_before(u16::MAX, &mut slots);
            match suffix.find('.') {
                Some(i) => start += i + 1,
                None => break,
            }
        }
        if let Some(abp) = &self.abp {
            self.check_abp(abp, name, &mut slots, &action_of);
        }
        for (i, action) in [Action::Allow, Action::Block, Action::Log]
            .into_iter()
            .enumerate()
        {
            if let Some(m) = slots[i].take() {
                return Verdict {
                    action: Some(action),
                    matched: Some(m),
                };
            }
        }
        Verdict::NONE
    }

    fn check_abp(
        &self,
        abp: &Abp,
        name: &str,
        slots: &mut [Option<Match>; 3],
        action_of: &dyn Fn(u16) -> (CategoryId, Action),
    ) {
        // Names on the wire reach us as ASCII (IDNs as punycode, odd bytes escaped); a
        // non-ASCII name (`metaguard check` with an unconvertible IDN) makes adblock
        // 0.13 slice inside a character and panic, and no hostname rule could match it.
        if !name.is_ascii() {
            return;
        }
        let url = format!("https://{name}/");
        let req = adblock::request::Request::preparsed(&url, name, "", "other", true, "GET");
        let r = abp.engine.check_network_request_subset(&req, false, true);
        let to_match = |info: &adblock::sourcemap::FilterRuleDebugInfo| {
            let loc = info.source_location.as_ref()?;
            let list = *abp.lists.get(loc.source_index as usize)?;
            let (category, action) = action_of(list);
            let rule: Arc<str> = info.raw_line.clone().unwrap_or_default().into();
            Some((
                action,
                Match {
                    list,
                    line: loc.line_number + 1,
                    category,
                    rule: RuleText::Abp(rule),
                },
            ))
        };
        if let (Some(exc), false) = (&r.exception, r.important) {
            // `@@` beats every block unless `$important` overrode it inside the engine.
            if let Some((_, m)) = to_match(exc) {
                slots[0].get_or_insert(m);
            }
        } else if let Some(f) = &r.filter
            && let Some((action, m)) = to_match(f)
        {
            slots[slot_index(action)].get_or_insert(m);
        }
    }
}

/// Read (or map from the cache) one list: large hosts and domain lists come back
/// compact, others as text. `trim` is set when a large compile freed memory.
/// The hashes of the lists found in or written to the cache are pushed on `cached`.
fn prepare(
    src: &mut ListSource,
    opts: &BuildOptions,
    trim: &mut bool,
    cached: &mut Vec<cache::Hash>,
) -> Prepared {
    let Some(path) = src.file.take() else {
        let text = std::mem::take(&mut src.text);
        let format = match src.format {
            ListFormat::Auto => parse::detect_format(&text),
            f => f,
        };
        if format == ListFormat::Abp || text.len() <= opts.compact_above {
            return Prepared::Text { text, format };
        }
        let header = parse::read_header(&text);
        let compiled = compact::compile_text(&text, format);
        drop(text);
        *trim = true;
        let meta = meta_of(src.format, format, header, &compiled);
        return Prepared::Compact(meta, compact::Bytes::owned(compiled.fst));
    };
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let as_text = |format: Option<ListFormat>| {
        let text = match std::fs::read(&path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read list; it is empty until the next reload");
                String::new()
            }
        };
        let format = format.unwrap_or(match src.format {
            ListFormat::Auto => parse::detect_format(&text),
            f => f,
        });
        Prepared::Text { text, format }
    };
    if size <= opts.compact_above as u64 || src.format == ListFormat::Abp {
        return as_text(None);
    }
    let hash = match &opts.cache_dir {
        Some(dir) => match cache::hash_file(&path) {
            Ok(hash) => {
                cached.push(hash);
                if let Some((meta, bytes)) = cache::load(dir, &hash, src.format) {
                    return Prepared::Compact(meta, bytes);
                }
                Some((dir, hash))
            }
            Err(_) => return as_text(None),
        },
        None => None,
    };
    let Ok(head) = read_head(&path) else {
        return as_text(None);
    };
    let format = match src.format {
        ListFormat::Auto => parse::detect_format(&head),
        f => f,
    };
    if format == ListFormat::Abp {
        return as_text(Some(format));
    }
    let header = parse::read_header(&head);
    drop(head);
    let compiled = match compile_file(&path, format) {
        Ok(c) => c,
        Err(_) => return as_text(Some(format)),
    };
    *trim = true;
    let meta = meta_of(src.format, format, header, &compiled);
    let bytes = hash
        .and_then(|(dir, hash)| cache::store(dir, &hash, &meta, &compiled))
        .unwrap_or(compact::Bytes::owned(compiled.fst));
    Prepared::Compact(meta, bytes)
}

fn meta_of(
    requested: ListFormat,
    format: ListFormat,
    header: parse::ListHeader,
    c: &compact::Compiled,
) -> cache::Meta {
    cache::Meta {
        requested,
        format,
        rules: c.rules,
        bad_lines: c.bad_lines,
        title: header.title,
        sources: header.sources,
        reviewed: header.reviewed,
        patterns: c.patterns.clone(),
    }
}

/// The first lines of a list file, as many as format detection (2000 lines) and the
/// header (up to its first rule line) read.
fn read_head(path: &Path) -> std::io::Result<String> {
    let mut r = std::io::BufReader::new(std::fs::File::open(path)?);
    let (mut out, mut line) = (Vec::new(), Vec::new());
    let (mut n, mut header_done) = (0, false);
    while n < 2000 || !header_done {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        n += 1;
        let t = String::from_utf8_lossy(&line);
        let t = t.trim();
        if !t.is_empty() && !t.starts_with('#') && !t.starts_with('!') {
            header_done = true;
        }
        out.extend_from_slice(&line);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Compile a list file, read in large chunks (never the whole file in memory).
fn compile_file(path: &Path, format: ListFormat) -> std::io::Result<compact::Compiled> {
    let t = std::time::Instant::now();
    let mut f = std::fs::File::open(path)?;
    let mut c = compact::Compiler::new(format);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        c.feed(&buf[..n]);
    }
    c.end();
    drop(buf);
    tracing::debug!(path = %path.display(), read_ms = t.elapsed().as_millis() as u64, "list read");
    Ok(c.finish())
}

/// Give the memory a large compile freed back to the system. glibc keeps freed heap
/// pages (the name arena and sort index of a 1M-rule list are tens of MiB) in its
/// arenas; `malloc_trim(0)` returns them, so RSS at rest and after a reload is the
/// filter's size, not the build's peak (see docs/performance.md, issue 16).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator; no pointer
    // held by Rust is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn add_pattern(
    domains: &mut FxHashMap<Box<str>, RuleRef>,
    patterns: &mut FxHashMap<Box<str>, Vec<pattern::PatternEntry>>,
    list: u16,
    line: u32,
    rule: pattern::PatternRule,
) {
    let key = rule.key().to_string();
    pattern::mark_patterns(domains, &key);
    patterns
        .entry(key.into_boxed_str())
        .or_default()
        .push(pattern::PatternEntry { list, line, rule });
}

/// Fill the slot of `list`'s action with this rule unless a more specific or earlier
/// rule filled it.
fn consider(
    slots: &mut [Option<Match>; 3],
    action_of: &dyn Fn(u16) -> (CategoryId, Action),
    start: usize,
    list: u16,
    line: u32,
    subdomains_only: bool,
) {
    let (category, action) = action_of(list);
    let slot = &mut slots[slot_index(action)];
    if slot.is_none() {
        *slot = Some(Match {
            list,
            line,
            category,
            rule: RuleText::Suffix {
                start,
                subdomains_only,
            },
        });
    }
}

fn slot_index(action: Action) -> usize {
    match action {
        Action::Allow => 0,
        Action::Block => 1,
        Action::Log => 2,
    }
}

fn insert(
    domains: &mut FxHashMap<Box<str>, RuleRef>,
    overflow: &mut FxHashMap<Box<str>, Vec<RuleRef>>,
    name: String,
    entry: RuleRef,
) {
    match domains.get_mut(name.as_str()) {
        None => {
            domains.insert(name.into_boxed_str(), entry);
        }
        Some(first) if first.list == NO_RULE => {
            // Only a pattern mark so far: the rule takes the slot and keeps the mark.
            *first = RuleRef {
                flags: entry.flags | (first.flags & PATTERNS),
                ..entry
            };
        }
        Some(first) => {
            // The same list naming a host twice adds nothing.
            if first.list == entry.list && first.subdomains_only() == entry.subdomains_only() {
                return;
            }
            first.flags |= MORE;
            let more = overflow.entry(name.into_boxed_str()).or_default();
            if !more
                .iter()
                .any(|e| e.list == entry.list && e.subdomains_only() == entry.subdomains_only())
            {
                more.push(entry);
            }
        }
    }
}

/// Count ABP network rules and unreadable lines the way the engine will see them.
fn count_abp(text: &str) -> (usize, usize) {
    let opts = ParseOptions {
        rule_types: RuleTypes::All,
        format: FilterFormat::Standard,
        ..Default::default()
    };
    let (mut rules, mut bad) = (0, 0);
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty()
            || t.starts_with('!')
            || t.starts_with('[')
            || t.starts_with("# ")
            || t == "#"
        {
            continue;
        }
        match adblock::lists::parse_filter(t, false, opts) {
            Ok(ParsedLine::Network(_)) => rules += 1,
            // Element hiding rules mean nothing to DNS: neither rules nor errors.
            Ok(ParsedLine::Cosmetic(_)) => {}
            Err(_) => bad += 1,
        }
    }
    (rules, bad)
}

/// A wire name as the filter wants it (lowercase, no trailing dot), without going
/// through `Display`: host names are copied byte by byte; anything unusual (escapes,
/// dots or spaces inside a label) takes the slow, exact path.
pub(crate) fn name_key(name: &hickory_proto::rr::Name) -> String {
    let mut out = String::with_capacity(name.len());
    for label in name.iter() {
        if !out.is_empty() {
            out.push('.');
        }
        for &b in label {
            let c = b.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_' || c == b'*' {
                out.push(c as char);
            } else {
                return normalize_query(&name.to_ascii());
            }
        }
    }
    out
}

/// A query name as the filter wants it: lowercase, no trailing dot, ASCII.
pub fn normalize_query(name: &str) -> String {
    let n = name.trim_end_matches('.');
    if n.is_ascii() {
        if n.bytes().any(|b| b.is_ascii_uppercase()) {
            n.to_ascii_lowercase()
        } else {
            n.to_string()
        }
    } else {
        idna::domain_to_ascii(n).unwrap_or_else(|_| n.to_lowercase())
    }
}

/// How a blocked name is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BlockResponse {
    /// A `0.0.0.0`, AAAA `::`, other types NODATA with an SOA.
    #[default]
    Null,
    /// NXDOMAIN with an SOA.
    Nxdomain,
    /// REFUSED.
    Refused,
}

/// `[filter]` in the config: which lists, extra entries, and the blocked answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    /// How blocked names are answered.
    pub block_response: BlockResponse,
    /// TTL of blocked answers, in seconds (short, so an unblock takes effect soon).
    pub blocked_ttl: u32,
    /// A file here with the name of an embedded list (e.g. `pixel.txt`) replaces it.
    pub lists_dir: std::path::PathBuf,
    /// Extra list files (hosts, domains or ABP), category `custom`, action block.
    pub blocklists: Vec<std::path::PathBuf>,
    /// Names (and their subdomains) that are never blocked.
    pub allow: Vec<ListedName>,
    /// Names (and their subdomains) blocked as category `custom`.
    pub block: Vec<ListedName>,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            block_response: BlockResponse::Null,
            blocked_ttl: 10,
            lists_dir: std::path::PathBuf::from("/etc/metaguard/blocklists"),
            blocklists: Vec::new(),
            allow: Vec::new(),
            block: Vec::new(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
