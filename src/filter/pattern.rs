//! Pattern rules of domain lists: AdGuard DNS filtering syntax `||sonar*.xx.fbcdn.net^`
//! (`*` globs inside labels) and `/regex/`, each indexed by the literal domain suffix
//! every name it matches must end in, so only names under that suffix ever try it.
//!
//! A glob pattern is `||` + labels + `^`. Its `*` matches any run of characters inside one
//! label (never a dot; write `*.` for a whole label), which is stricter than AdGuard's
//! `*`: a pattern cannot reach across label boundaries into another part of the name.
//! `||` anchors it at a label start, so it covers the matched name and its subdomains,
//! like every other domain rule. The trailing labels without `*` (at least two:
//! `xx.fbcdn.net`, `facebook.com`) are its index key.
//!
//! A regex pattern is `/re/`, matched against the whole name (lowercase, no trailing
//! dot). It must end in `$` after a literal suffix that starts with an escaped dot and
//! has at least two labels (`/^sonar[0-9]*-[a-z0-9-]+\.xx\.fbcdn\.net$/`), so that it can
//! be indexed too, and it must have no top-level `|` (whose other branch would escape the
//! index). Anything else is a bad line, counted and skipped.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::{Filter, Match, NO_RULE, PATTERNS, RuleRef, RuleText, slot_index};
use crate::policy::{Action, CategoryId};

/// How a pattern decides, once a name is known to end in its key.
#[derive(Debug, Clone)]
pub(crate) enum Matcher {
    /// Glob labels just left of the key, left to right.
    Glob(Box<[Box<str>]>),
    /// A regex over the whole name.
    Regex {
        re: regex::Regex,
        /// For a regex anchored at the start (`^`): every literal a match must begin
        /// with, lowercase, checked before the regex runs (see [`anchored_prefixes`]).
        prefixes: Option<Box<[Box<str>]>>,
    },
}

/// One pattern line, parsed.
#[derive(Debug, Clone)]
pub struct PatternRule {
    /// The literal suffix every matching name ends in, at a label boundary.
    pub(crate) key: String,
    pub(crate) matcher: Matcher,
    /// The rule as written (without its comment).
    pub(crate) text: Arc<str>,
}

impl PartialEq for PatternRule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for PatternRule {}

impl PatternRule {
    /// The literal domain suffix the pattern is indexed by (`xx.fbcdn.net`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The rule as written in its list.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `name` (lowercase, no trailing dot) matches, given that it ends in the key
    /// at `key_start`, a label start after the first ([`PatternRule::matches`] checks it).
    pub(crate) fn matches_at(&self, name: &str, key_start: usize) -> bool {
        match &self.matcher {
            Matcher::Regex { re, prefixes } => {
                // A name that starts with none of the required literals cannot match:
                // a few byte compares instead of a regex run (~150 ns each).
                if let Some(prefixes) = prefixes
                    && name.is_ascii()
                    && !prefixes.iter().any(|p| {
                        name.get(..p.len())
                            .is_some_and(|h| h.eq_ignore_ascii_case(p))
                    })
                {
                    return false;
                }
                re.is_match(name)
            }
            Matcher::Glob(globs) => {
                // The labels left of the key, right to left, against the globs.
                let Some(prefix) = key_start
                    .checked_sub(1)
                    .and_then(|dot| name.get(..dot))
                    .filter(|p| !p.is_empty())
                else {
                    return false;
                };
                let mut labels = prefix.rsplit('.');
                globs.iter().rev().all(|g| {
                    labels
                        .next()
                        .is_some_and(|l| glob(g.as_bytes(), l.as_bytes()))
                })
            }
        }
    }

    /// Whether `name` (lowercase, no trailing dot) matches this pattern.
    pub fn matches(&self, name: &str) -> bool {
        let Some(start) = name.len().checked_sub(self.key.len()) else {
            return false;
        };
        // Like the filter: only names below the key try the pattern.
        name.ends_with(self.key.as_str())
            && start > 0
            && name.as_bytes()[start - 1] == b'.'
            && self.matches_at(name, start)
    }
}

/// A pattern rule with the list and line it came from.
pub(super) struct PatternEntry {
    pub(super) list: u16,
    pub(super) line: u32,
    pub(super) rule: PatternRule,
}

impl Filter {
    /// Try the patterns indexed under `suffix` (`name[start..]`); the first match of
    /// each action fills its slot if a longer suffix has not.
    pub(super) fn check_patterns(
        &self,
        name: &str,
        start: usize,
        suffix: &str,
        slots: &mut [Option<Match>; 3],
        action_of: &dyn Fn(u16) -> (CategoryId, Action),
    ) {
        for p in self.patterns.get(suffix).into_iter().flatten() {
            let (category, action) = action_of(p.list);
            let slot = &mut slots[slot_index(action)];
            if slot.is_none() && p.rule.matches_at(name, start) {
                *slot = Some(Match {
                    list: p.list,
                    line: p.line,
                    category,
                    rule: RuleText::Pattern(p.rule.text.clone()),
                });
            }
        }
    }
}

/// Mark `key` in the suffix map as having patterns (adding an entry without a rule if
/// no rule names it), so checks find them on the lookups they make anyway.
pub(super) fn mark_patterns(domains: &mut FxHashMap<Box<str>, RuleRef>, key: &str) {
    match domains.get_mut(key) {
        Some(e) => e.flags |= PATTERNS,
        None => {
            domains.insert(
                key.into(),
                RuleRef {
                    list: NO_RULE,
                    line: 0,
                    flags: PATTERNS,
                },
            );
        }
    }
}

/// `*`-only glob over one label (no `?`, no classes).
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

fn label_ok(label: &str, allow_star: bool) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || b == b'-'
                || b == b'_'
                || (allow_star && b == b'*')
        })
}

/// Parse a pattern body (comment already stripped): `Some(Ok)` a pattern, `Some(Err)` a
/// pattern line we cannot use, `None` not a pattern at all.
pub(crate) fn parse(body: &str) -> Option<Result<PatternRule, ()>> {
    if body.len() > 2 && body.starts_with('/') && body.ends_with('/') {
        return Some(parse_regex(body));
    }
    let inner = body.strip_prefix("||")?.strip_suffix('^')?;
    if !inner.contains('*') {
        return None;
    }
    Some(parse_glob(body, inner))
}

fn parse_glob(body: &str, inner: &str) -> Result<PatternRule, ()> {
    let inner = inner.to_ascii_lowercase();
    let labels: Vec<&str> = inner.split('.').collect();
    if inner.len() > 253 || !labels.iter().all(|l| label_ok(l, true)) {
        return Err(());
    }
    let literal = labels.iter().rev().take_while(|l| !l.contains('*')).count();
    if literal < 2 {
        return Err(());
    }
    let split = labels.len() - literal;
    Ok(PatternRule {
        key: labels[split..].join("."),
        matcher: Matcher::Glob(labels[..split].iter().map(|l| Box::from(*l)).collect()),
        text: Arc::from(body),
    })
}

fn parse_regex(body: &str) -> Result<PatternRule, ()> {
    let src = &body[1..body.len() - 1];
    let key = regex_key(src).ok_or(())?;
    // Case-insensitive like AdGuard's regex rules (names are lowercase already).
    let re = regex::RegexBuilder::new(src)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
        .map_err(|_| ())?;
    Ok(PatternRule {
        key,
        matcher: Matcher::Regex {
            re,
            prefixes: anchored_prefixes(src),
        },
        text: Arc::from(body),
    })
}

/// The literals every match of a start-anchored regex begins with (`^rx1-[0-9]+\.x\.com$`
/// gives `rx1-`), lowercase and ASCII only (a literal with other bytes cannot begin an
/// ASCII name). `None` when the regex is not anchored at the start, or a match may begin
/// with anything (an empty literal, an infinite set): then the regex always runs.
fn anchored_prefixes(src: &str) -> Option<Box<[Box<str>]>> {
    use regex_syntax::hir::Look;
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let hir = regex_syntax::ParserBuilder::new()
        .case_insensitive(true)
        .build()
        .parse(src)
        .ok()?;
    if !hir.properties().look_set_prefix().contains(Look::Start) {
        return None;
    }
    // A class wider than a letter's case variants (`[0-9]`) ends the literal there
    // rather than multiplying it; more than 64 literals are cut shorter by the extractor.
    let seq = Extractor::new()
        .kind(ExtractKind::Prefix)
        .limit_class(3)
        .limit_total(64)
        .extract(&hir);
    let mut out: Vec<Box<str>> = Vec::new();
    for lit in seq.literals()? {
        let b = lit.as_bytes();
        if b.is_empty() {
            return None;
        }
        if !b.is_ascii() {
            continue;
        }
        let l = std::str::from_utf8(b).ok()?.to_ascii_lowercase();
        if !out.iter().any(|o| **o == *l) {
            out.push(l.into_boxed_str());
        }
    }
    Some(out.into_boxed_slice())
}

/// One regex token, as far as finding a literal tail needs.
#[derive(PartialEq)]
enum Tok {
    Lit(u8),
    Quant,
    End,
    Other,
}

/// The literal suffix a regex's matches must end in: `\.xx\.fbcdn\.net$` gives
/// `xx.fbcdn.net`. `None` when there is none of two labels or more, or a top-level `|`.
fn regex_key(src: &str) -> Option<String> {
    let b = src.as_bytes();
    let (mut toks, mut depth, mut i) = (Vec::new(), 0i32, 0);
    while i < b.len() {
        let t = match b[i] {
            b'\\' => {
                i += 1;
                match *b.get(i)? {
                    c if c.is_ascii_alphanumeric() => Tok::Other,
                    c => Tok::Lit(c),
                }
            }
            b'[' => {
                // A class: skip to its closing bracket (a `]` first in it is literal).
                i += 1;
                if b.get(i) == Some(&b'^') {
                    i += 1;
                }
                if b.get(i) == Some(&b']') {
                    i += 1;
                }
                while *b.get(i)? != b']' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                Tok::Other
            }
            b'(' => {
                depth += 1;
                Tok::Other
            }
            b')' => {
                depth -= 1;
                Tok::Other
            }
            b'|' if depth == 0 => return None,
            b'*' | b'+' | b'?' | b'}' => Tok::Quant,
            b'$' => Tok::End,
            b'.' | b'^' | b'{' | b'|' => Tok::Other,
            c => Tok::Lit(c.to_ascii_lowercase()),
        };
        toks.push(t);
        i += 1;
    }
    if toks.pop()? != Tok::End {
        return None;
    }
    let mut tail = Vec::new();
    while let Some(Tok::Lit(c)) = toks.pop() {
        tail.push(c);
    }
    // The tail ends at the first token that is not a literal (a quantifier, a class, a
    // group); only the part after its first dot is sure to start at a label.
    tail.reverse();
    let tail = String::from_utf8(tail).ok()?;
    let key = &tail[tail.find('.')? + 1..];
    let labels: Vec<&str> = key.split('.').collect();
    (labels.len() >= 2 && labels.iter().all(|l| label_ok(l, false))).then(|| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> PatternRule {
        parse(s).unwrap().unwrap()
    }

    #[test]
    fn globs_match_inside_labels_only() {
        let p = pat("||sonar*.xx.fbcdn.net^");
        assert_eq!(p.key(), "xx.fbcdn.net");
        for yes in [
            "sonar6-ist2-1.xx.fbcdn.net",
            "sonar-iad.xx.fbcdn.net",
            "sonar.xx.fbcdn.net",
            "a.sonar6-ist2-1.xx.fbcdn.net",
        ] {
            assert!(p.matches(yes), "{yes}");
        }
        for no in [
            "scontent-ist2-1.xx.fbcdn.net",
            "static.xx.fbcdn.net",
            "xx.fbcdn.net",
            "sonar6.a.xx.fbcdn.net",
            "asonar.xx.fbcdn.net",
            "sonar6-ist2-1.xx.fbcdn.net.evil.example",
            "sonar6.yxx.fbcdn.net",
        ] {
            assert!(!p.matches(no), "{no}");
        }
        let p = pat("||*-netseer-ipaddr-assoc.*.fbcdn.net^");
        assert_eq!(p.key(), "fbcdn.net");
        assert!(
            p.matches("167db6c2-36d1-4a99-b3c6-83cabdec8876-netseer-ipaddr-assoc.xz.fbcdn.net")
        );
        assert!(!p.matches("netseer-ipaddr-assoc.xz.fbcdn.net"));
        assert!(!p.matches("x-netseer-ipaddr-assoc.fbcdn.net"));
        let p = pat("||Edge-Atlas-*.facebook.com^");
        assert!(p.matches("edge-atlas-shv-01-ams2.facebook.com"));
        assert!(!p.matches("edge-chat.facebook.com"));
        assert!(!p.matches("atlas.c10r.facebook.com"));
    }

    #[test]
    fn glob_backtracks() {
        assert!(glob(b"a*b*c", b"aXbYbZc"));
        assert!(glob(b"*", b""));
        assert!(glob(b"*-x", b"a-b-x"));
        assert!(!glob(b"a*b", b"aXc"));
        assert!(!glob(b"ab", b"abc"));
    }

    #[test]
    fn regexes_need_a_literal_suffix() {
        let p = pat(r"/^sonar[0-9]*-[a-z0-9-]+\.xx\.fbcdn\.net$/");
        assert_eq!(p.key(), "xx.fbcdn.net");
        assert!(p.matches("sonar6-ist2-1.xx.fbcdn.net"));
        assert!(!p.matches("scontent-ist2-1.xx.fbcdn.net"));
        assert_eq!(pat(r"/(a|b)x\.fbcdn\.net$/").key(), "fbcdn.net");
        assert_eq!(pat(r"/\d+\.snr\.fbcdn\.net$/").key(), "snr.fbcdn.net");
        for bad in [
            r"/sonar.*/",                   // no anchored suffix
            r"/sonar\.fbcdn\.net/",         // not anchored with $
            r"/x\.net$/",                   // one label
            r"/a$|sonar\.xx\.fbcdn\.net$/", // a top-level branch escapes the index
            r"/[z-a]x\.fbcdn\.net$/",       // does not compile
            r"/x\.fbc[dn]n\.net$/",         // no whole label literal... fbc[dn]n breaks it
        ] {
            assert!(matches!(parse(bad), Some(Err(()))), "{bad}");
        }
    }

    #[test]
    fn anchored_regexes_get_a_literal_prefix() {
        let prefixes = |s: &str| {
            anchored_prefixes(s).map(|p| {
                let mut v: Vec<String> = p.iter().map(|l| l.to_string()).collect();
                v.sort();
                v
            })
        };
        assert_eq!(
            prefixes(r"^rx19-[0-9]+\.telemetry9\.example\.com$"),
            Some(vec!["rx19-".to_string()])
        );
        assert_eq!(
            prefixes(r"^(sonar|SNR)[0-9]*\.x\.com$"),
            Some(vec!["snr".to_string(), "sonar".to_string()])
        );
        // Not anchored, anchored in one branch only, or a match may begin with anything.
        for none in [
            r"rx1-[0-9]+\.x\.com$",
            r"(^a|b)x\.x\.com$",
            r"(?m)^a\.x\.com$",
            r"^[a-z]+\.x\.com$",
            r"^.*a\.x\.com$",
        ] {
            assert_eq!(prefixes(none), None, "{none}");
        }
        // The prefilter only ever skips names the regex would not match.
        let p = pat(r"/^Sonar[0-9]*-[a-z0-9-]+\.xx\.fbcdn\.net$/");
        for (name, yes) in [
            ("sonar6-ist2-1.xx.fbcdn.net", true),
            ("SONAR6-ist2-1.xx.fbcdn.net", true),
            ("sonar-x.xx.fbcdn.net", true),
            ("xsonar6-ist2-1.xx.fbcdn.net", false),
            ("sona.xx.fbcdn.net", false),
        ] {
            assert_eq!(p.matches(name), yes, "{name}");
        }
    }

    #[test]
    fn bad_globs_are_errors_and_plain_rules_are_not_patterns() {
        for bad in [
            "||sonar*^",
            "||*.net^",
            "||so nar*.x.com^",
            "||a*..x.com^",
            "||a*.x/y.com^",
        ] {
            assert!(matches!(parse(bad), Some(Err(()))), "{bad}");
        }
        assert!(parse("||an.facebook.com^").is_none());
        assert!(parse("x.com").is_none());
    }

    /// The filter around patterns: precedence, provenance, bad lines.
    mod filter {
        use std::collections::HashMap;

        use crate::filter::{Filter, ListFormat, ListSource, normalize_query};
        use crate::policy::{Action, Policy};

        fn list(name: &str, category: &str, text: &str) -> ListSource {
            ListSource {
                name: name.into(),
                category: category.into(),
                origin: "test".into(),
                format: ListFormat::Domains,
                file: None,
                default_action: None,
                text: text.into(),
            }
        }

        /// Action, category, rule text, (list, line).
        type Seen = (
            Option<Action>,
            Option<String>,
            Option<String>,
            Option<(u16, u32)>,
        );

        /// What checking `name` gives under "first-party logs, the rest blocks".
        fn verdict(f: &Filter, name: &str) -> Seen {
            let actions: HashMap<_, _> = f
                .categories()
                .iter()
                .map(|(id, n)| {
                    (
                        id,
                        if n == "first-party" {
                            Action::Log
                        } else {
                            Action::Block
                        },
                    )
                })
                .collect();
            let p = Policy::new(
                f.categories(),
                &actions,
                &Default::default(),
                &Default::default(),
            );
            let name = normalize_query(name);
            let v = f.check(&name, p.actions(None));
            let m = v.matched.as_ref();
            (
                v.action,
                m.map(|m| f.categories().name(m.category).to_string()),
                v.rule_text(&name),
                m.map(|m| (m.list, m.line)),
            )
        }

        fn meta() -> Filter {
            Filter::build(vec![
                list(
                    "first-party.txt",
                    "first-party",
                    "fbcdn.net\nfacebook.com\nedge-chat.facebook.com\n",
                ),
                list(
                    "app-telemetry.txt",
                    "app-telemetry",
                    "# c\n||sonar*.xx.fbcdn.net^   # reason: probes\n||*-netseer-ipaddr-assoc.*.fbcdn.net^\n\
                     ||edge-atlas-*.facebook.com^\nsonar6.xx.fbcdn.net\n",
                ),
            ])
        }

        #[test]
        fn a_tracker_pattern_beats_a_shorter_first_party_suffix() {
            let f = meta();
            let (a, cat, rule, at) = verdict(&f, "Sonar6-IST2-1.xx.fbcdn.net.");
            assert_eq!(a, Some(Action::Block));
            assert_eq!(cat.as_deref(), Some("app-telemetry"));
            assert_eq!(rule.as_deref(), Some("||sonar*.xx.fbcdn.net^"));
            assert_eq!(at, Some((1, 2)));
            let (a, _, rule, at) = verdict(
                &f,
                "167db6c2-36d1-4a99-b3c6-83cabdec8876-netseer-ipaddr-assoc.xz.fbcdn.net",
            );
            assert_eq!(a, Some(Action::Block));
            assert_eq!(
                rule.as_deref(),
                Some("||*-netseer-ipaddr-assoc.*.fbcdn.net^")
            );
            assert_eq!(at, Some((1, 3)));
            assert_eq!(
                verdict(&f, "edge-atlas-shv-01-ams2.facebook.com").0,
                Some(Action::Block)
            );
        }

        #[test]
        fn first_party_names_of_the_same_shape_stay_first_party() {
            let f = meta();
            for name in [
                "scontent-ist2-1.xx.fbcdn.net",
                "static.xx.fbcdn.net",
                "xx.fbcdn.net",
                "edge-chat.facebook.com",
                "edge-mqtt.facebook.com",
                "star-mini.c10r.facebook.com",
            ] {
                let (a, cat, _, _) = verdict(&f, name);
                assert_eq!(
                    (a, cat.as_deref()),
                    (Some(Action::Log), Some("first-party")),
                    "{name}"
                );
            }
            assert_eq!(
                verdict(&f, "sonar6-ist2-1.xx.fbcdn.net.evil.example").0,
                None
            );
        }

        #[test]
        fn a_longer_exact_rule_is_reported_before_a_pattern() {
            let f = meta();
            let (_, _, rule, at) = verdict(&f, "sonar6.xx.fbcdn.net");
            assert_eq!(rule.as_deref(), Some("sonar6.xx.fbcdn.net"));
            assert_eq!(at, Some((1, 5)));
        }

        #[test]
        fn a_rule_on_a_pattern_key_keeps_both() {
            // The pattern marks xx.example first; a later exact rule takes the entry.
            let f = Filter::build(vec![
                list("p", "custom", "||t*.xx.example^\n"),
                list("d", "first-party", "xx.example\n"),
            ]);
            assert_eq!(verdict(&f, "t1.xx.example").0, Some(Action::Block));
            assert_eq!(verdict(&f, "xx.example").0, Some(Action::Log));
            assert_eq!(verdict(&f, "a.xx.example").0, Some(Action::Log));
            assert_eq!(verdict(&f, "example").0, None);
        }

        #[test]
        fn regex_rules_in_a_user_list() {
            let f = Filter::build(vec![list(
                "user.txt",
                "custom",
                "/^sonar[0-9]*-[a-z0-9-]+\\.xx\\.fbcdn\\.net$/\n",
            )]);
            assert_eq!(
                verdict(&f, "sonar6-ist2-1.xx.fbcdn.net").0,
                Some(Action::Block)
            );
            assert_eq!(verdict(&f, "scontent-ist2-1.xx.fbcdn.net").0, None);
            assert_eq!(f.lists()[0].rules, 1);
        }

        #[test]
        fn bad_pattern_lines_are_counted_and_skipped() {
            let f = Filter::build(vec![list(
                "d",
                "custom",
                "||ok*.x.example^\n||bad*^\n/no-suffix/\n||a*.b c.example^\nplain.example\n",
            )]);
            assert_eq!((f.lists()[0].rules, f.lists()[0].bad_lines), (2, 3));
            assert_eq!(verdict(&f, "ok1.x.example").0, Some(Action::Block));
            assert_eq!(verdict(&f, "plain.example").0, Some(Action::Block));
        }
    }
}
