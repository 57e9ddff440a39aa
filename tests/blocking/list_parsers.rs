//! Our list parsers against the real lists in `shared/testdata/lists/` (read in place,
//! never copied): rule and bad-line counts checked against numbers computed with shell
//! tools, and hosts/domain verdicts checked against `adblock`'s own hosts engine.
//!
//! Every expected number below was computed in `shared/testdata/lists/` with the
//! command written next to it, independently of our parser.

use std::collections::HashMap;

use adblock::lists::{FilterFormat, FilterSet, ParseOptions};
use adblock::request::Request;
use metaguard::filter::parse::{Line, parse_domain_line, parse_hosts_line};
use metaguard::filter::{Filter, ListFormat, ListSource, ListStats, normalize_query};
use metaguard::policy::{Action, Policy};

fn path(file: &str) -> String {
    format!(
        "{}/../shared/testdata/lists/{file}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn read(file: &str) -> String {
    let bytes = std::fs::read(path(file)).unwrap_or_else(|e| panic!("{}: {e}", path(file)));
    String::from_utf8_lossy(&bytes).into_owned()
}

fn source(file: &str, format: ListFormat, text: String) -> ListSource {
    ListSource {
        name: file.into(),
        category: "custom".into(),
        origin: path(file),
        format,
        file: None,
        default_action: Some(Action::Block),
        text,
    }
}

fn stats(file: &str) -> ListStats {
    let f = Filter::build(vec![source(file, ListFormat::Auto, read(file))]);
    f.lists()[0].clone()
}

/// Hosts files: our filter counts every name on every rule line (a name repeated on
/// two lines counts twice, as the (list, name, line) triples it stores), except the
/// localhost-style names hosts files map to themselves (`localhost`,
/// `localhost.localdomain`, `local`, `broadcasthost`, `ip6-*`, `0.0.0.0`). A line
/// whose first field is not an IP address is a bad line.
#[test]
fn stevenblack_hosts_counts() {
    let s = stats("stevenblack-hosts");
    assert_eq!(s.format, ListFormat::Hosts);
    // awk '{sub(/#.*/,""); if (NF<2) next; for(i=2;i<=NF;i++){n=tolower($i);
    //   if (n ~ /^(localhost|localhost\.localdomain|local|broadcasthost|ip6-localhost|
    //   ip6-loopback|ip6-localnet|ip6-mcastprefix|ip6-allnodes|ip6-allrouters|ip6-allhosts|
    //   0\.0\.0\.0)$/) continue; c++}} END{print c}' stevenblack-hosts
    //   -> 57535 (matches the file's own "Number of unique domains: 57,535")
    assert_eq!(s.rules, 57535);
    // awk '{sub(/#.*/,""); if (NF>=2 && $1 !~ /^([0-9.]+|[0-9a-f:]+)$/) c++} END{print c}'
    //   stevenblack-hosts -> 1: `fe80::1%lo0 localhost`, an address with a zone id,
    //   which is not an IP literal in a hosts file we can use (its only name is
    //   localhost, so no rule is lost).
    assert_eq!(s.bad_lines, 1);
}

#[test]
fn jmdugan_hosts_counts() {
    let s = stats("jmdugan-facebook-all.hosts");
    assert_eq!(s.format, ListFormat::Hosts);
    // awk '{sub(/#.*/,""); if (NF<2) next; c+=NF-1} END{print c}' jmdugan-facebook-all.hosts
    //   -> 2117 (every line is `0.0.0.0 name`; `wc -l` -> 2117 too)
    assert_eq!(s.rules, 2117);
    // awk '{sub(/#.*/,""); if (NF>=2 && $1 !~ /^([0-9.]+|[0-9a-f:]+)$/) c++} END{print c}' -> 0
    assert_eq!(s.bad_lines, 0);
}

/// Domain lists: one rule per non-comment line.
#[test]
fn hagezi_domains_counts() {
    let s = stats("hagezi-personal-domains.txt");
    assert_eq!(s.format, ListFormat::Domains);
    // grep -cvE '^\s*(#|$)' hagezi-personal-domains.txt -> 12305 (header: "# Domains: 12305")
    assert_eq!(s.rules, 12305);
    // grep -vE '^\s*(#|$)' hagezi-personal-domains.txt \
    //   | grep -cvE '^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$' -> 0
    assert_eq!(s.bad_lines, 0);
}

#[test]
fn bundy01_domains_counts() {
    let s = stats("bundy01-meta-domains.txt");
    assert_eq!(s.format, ListFormat::Domains);
    // grep -cvE '^\s*(#|$)' bundy01-meta-domains.txt -> 120076 (SOURCES.md: 120,076 names)
    assert_eq!(s.rules, 120076);
    // grep -vE '^\s*(#|$)' bundy01-meta-domains.txt \
    //   | grep -cvE '^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$' -> 0
    //   (and no label over 63 bytes: awk '{n=split($0,a,"."); for(i=1;i<=n;i++)
    //   if (length(a[i])>63) c++} END{print c+0}' -> 0)
    assert_eq!(s.bad_lines, 0);
}

/// ABP: rules are network filters; element-hiding rules are neither rules nor bad.
#[test]
fn easyprivacy_abp_counts() {
    let s = stats("easyprivacy.txt");
    assert_eq!(s.format, ListFormat::Abp);
    // Network-rule candidates (not blank, not `!` comment, not `[Adblock` header, not
    // cosmetic `##`/`#@#`/`#?#`/`#$#`...):
    // grep -vE '^\s*(!|\[|$)' easyprivacy.txt | grep -cvE '#[@?$%]*#' -> 55504
    const CANDIDATES: usize = 55504;
    // Our count sees one line more than the grep: a cosmetic-looking line adblock
    // rejects (most likely 17277 `abema.tv##^script:has-text(NREUM)`, HTML filtering),
    // which lands in bad_lines.
    assert_eq!(s.rules + s.bad_lines, CANDIDATES + 1);
    assert_eq!(s.bad_lines, EASYPRIVACY_BAD);
    assert_eq!(s.rules, CANDIDATES + 1 - EASYPRIVACY_BAD); // 55501
}

/// Lines of easyprivacy.txt that `adblock` cannot parse. NOT independently derived:
/// measured with our counter (adblock's `parse_filter`). Candidates found with
/// grep -nE '\$(.*,)?(replace|rewrite)|##\^' easyprivacy.txt -> 13372 (`$rewrite=`),
/// 17318 (`$replace=`), 17277 (`##^` HTML filter); the fourth is not identified.
const EASYPRIVACY_BAD: usize = 4;

/// Every name a hosts or domain list yields, in list order, by our line parsers.
fn listed_names(text: &str, format: ListFormat) -> Vec<String> {
    let parse = if format == ListFormat::Hosts {
        parse_hosts_line
    } else {
        parse_domain_line
    };
    let mut out = Vec::new();
    for line in text.lines() {
        if let Line::Rules(rules) = parse(line) {
            out.extend(rules.into_iter().map(|r| r.name));
        }
    }
    out
}

/// The five probes checked for each listed name.
fn probes(name: &str) -> Vec<String> {
    let mut p = vec![
        name.to_string(),
        format!("sub.{name}"),
        format!("x{name}"),
        format!("{name}.evil.example"),
    ];
    if let Some((_, parent)) = name.split_once('.')
        && parent.contains('.')
    {
        p.push(parent.to_string());
    }
    p
}

/// Our verdict and adblock's (hosts format) for every probe of every `step`-th name;
/// returns the disagreements as (probe, ours, adblock).
fn compare(file: &str, step: usize) -> (usize, Vec<(String, bool, bool)>) {
    let text = read(file);
    let ours = Filter::build(vec![source(file, ListFormat::Auto, text.clone())]);
    let format = ours.lists()[0].format;
    let actions = HashMap::from([(0, Action::Block)]);
    let policy = Policy::new(
        ours.categories(),
        &actions,
        &Default::default(),
        &Default::default(),
    );
    let mut set = FilterSet::new(false);
    set.add_filter_list(
        text.clone(),
        ParseOptions {
            format: FilterFormat::Hosts,
            ..Default::default()
        },
    );
    let engine = adblock::Engine::new_with_filter_set(set);
    let mut checked = 0;
    let mut diffs = Vec::new();
    for name in listed_names(&text, format).iter().step_by(step) {
        for probe in probes(name) {
            let q = normalize_query(&probe);
            let mine = ours.check(&q, policy.actions(None)).is_block();
            let req = Request::new(&format!("https://{q}/"), "", "other", "GET")
                .unwrap_or_else(|e| panic!("{q}: {e:?}"));
            let theirs = engine.check_network_request(&req).should_block();
            checked += 1;
            if mine != theirs {
                diffs.push((probe, mine, theirs));
            }
        }
    }
    (checked, diffs)
}

/// Known, allowed disagreements: adblock's `is_anchored_by_hostname` (adblock 0.13.5,
/// `src/filters/network_matchers.rs`) looks only at the FIRST occurrence of the rule's
/// host in the queried name. For rule `facebook.com` and query
/// `facebook.com0.facebook.com` that first occurrence is followed by `0`, not a dot,
/// so adblock says "no match", although the query is a subdomain of `facebook.com`.
/// We follow DNS semantics (the name and every subdomain, never a substring) and
/// block it. A disagreement is allowed only when we block, adblock does not, and the
/// rule we matched occurs earlier in the query than at its label-aligned suffix.
fn adblock_first_occurrence_miss(ours: &Filter, probe: &str) -> bool {
    let q = normalize_query(probe);
    let actions = [Action::Block];
    let v = ours.check(&q, &actions);
    match v.rule_text(&q) {
        Some(rule) => q.find(&rule).is_some_and(|i| i + rule.len() < q.len()),
        None => false,
    }
}

fn assert_same(file: &str, step: usize, allowed: &[&str]) {
    let (checked, diffs) = compare(file, step);
    assert!(checked > 0);
    let ours = Filter::build(vec![source(file, ListFormat::Auto, read(file))]);
    let (excused, wrong): (Vec<_>, Vec<_>) = diffs.into_iter().partition(|(p, mine, theirs)| {
        *mine && !*theirs && adblock_first_occurrence_miss(&ours, p)
    });
    assert!(
        wrong.is_empty(),
        "{file}: {} of {checked} probes differ, first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    let mut excused: Vec<String> = excused.into_iter().map(|(p, _, _)| p).collect();
    excused.sort();
    assert_eq!(excused, allowed, "{file}: allowed exceptions changed");
}

// Debug-mode adblock costs about 1 ms a probe, so the big lists are sampled (every
// k-th listed name, 4-5 probes each) to keep the whole file under ~20 s.

#[test]
fn same_verdicts_as_adblock_stevenblack() {
    assert_same("stevenblack-hosts", 29, &[]);
}

#[test]
fn same_verdicts_as_adblock_jmdugan() {
    // Every name. Rule `facebook.com` (line 794) and listed name
    // `zh-tw.facebook.com0.facebook.com` (line 2117): see adblock_first_occurrence_miss.
    assert_same(
        "jmdugan-facebook-all.hosts",
        1,
        &[
            "facebook.com0.facebook.com",
            "xzh-tw.facebook.com0.facebook.com",
        ],
    );
}

#[test]
fn same_verdicts_as_adblock_hagezi() {
    assert_same("hagezi-personal-domains.txt", 7, &[]);
}

#[test]
fn same_verdicts_as_adblock_bundy01_sampled() {
    assert_same("bundy01-meta-domains.txt", 61, &[]);
}
