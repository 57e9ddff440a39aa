//! Filter check speed with 200k and 1M rules (issue 16: large lists are compact):
//! criterion for the mean, plus a per-check latency distribution (p50/p99/max) printed
//! once, the figure the issue targets.
//! Issue 17 adds pattern rules: the same common names with and without patterns in the
//! lists (their time must not change), and names under the suffixes where patterns are
//! indexed, with the embedded lists plus a 200k-rule user list holding 1k patterns.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group};
use metaguard::filter::{Filter, ListFormat, ListSource};
use metaguard::lists;
use metaguard::policy::Policy;

/// Embedded Meta lists plus 100k hosts lines and 100k plain domains.
fn filter_200k() -> Filter {
    filter_generated(100_000)
}

/// Embedded Meta lists plus `n` hosts lines and `n` plain domains (the same names as
/// `filter_200k`'s and more): issue 16's 1M rules with `n` = 500k, both lists compact.
fn filter_generated(n: usize) -> Filter {
    let mut sources = lists::sources(&metaguard::filter::FilterConfig {
        lists_dir: "/nonexistent".into(),
        ..Default::default()
    })
    .expect("embedded lists");
    let hosts: String = (0..n)
        .map(|i| format!("0.0.0.0 ads{i}.tracker{}.example\n", i % 997))
        .collect();
    let domains: String = (0..n)
        .map(|i| format!("t{i}.metrics{}.example.net\n", i % 991))
        .collect();
    for (name, format, text) in [
        ("hosts", ListFormat::Hosts, hosts),
        ("domains", ListFormat::Domains, domains),
    ] {
        sources.push(ListSource {
            name: name.into(),
            category: "custom".into(),
            origin: "bench".into(),
            format,
            file: None,
            default_action: None,
            text,
        });
    }
    Filter::build(sources)
}

/// The embedded lists without their pattern lines (the baseline for "unchanged").
fn embedded(patterns: bool) -> Vec<ListSource> {
    let mut sources = lists::sources(&metaguard::filter::FilterConfig {
        lists_dir: "/nonexistent".into(),
        ..Default::default()
    })
    .expect("embedded lists");
    if !patterns {
        for s in &mut sources {
            s.text = s
                .text
                .lines()
                .filter(|l| {
                    let pattern = l.starts_with('/') || (l.starts_with("||") && l.contains('*'));
                    !pattern
                })
                .map(|l| format!("{l}\n"))
                .collect();
        }
    }
    sources
}

/// Embedded lists plus one 200k-rule user domain list: 199k domains and, with `patterns`,
/// 1k pattern rules (900 globs, 100 regexes) under 100 suffixes `telemetry<k>.example.com`.
/// Without patterns the list has the same 199k domains and the embedded patterns are gone.
fn filter_user_list(patterns: bool) -> Filter {
    let mut sources = embedded(patterns);
    let mut text: String = (0..199_000)
        .map(|i| format!("t{i}.metrics{}.example.net\n", i % 991))
        .collect();
    if patterns {
        for i in 0..1_000 {
            let k = i % 100;
            if i % 10 == 9 {
                text.push_str(&format!(
                    "/^rx{i}-[0-9]+\\.telemetry{k}\\.example\\.com$/\n"
                ));
            } else {
                text.push_str(&format!("||px*-{i}.telemetry{k}.example.com^\n"));
            }
        }
    }
    sources.push(ListSource {
        name: "user".into(),
        category: "custom".into(),
        origin: "bench".into(),
        format: ListFormat::Domains,
        file: None,
        default_action: None,
        text,
    });
    let f = Filter::build(sources);
    assert_eq!(f.lists().iter().map(|l| l.bad_lines).sum::<usize>(), 0);
    let by_pattern = |n: &str| f.check(n, &[]).by_pattern();
    for n in [
        "px5-5.telemetry5.example.com",
        "rx9-42.telemetry9.example.com",
        "sonar6-ist2-1.xx.fbcdn.net",
    ] {
        assert_eq!(by_pattern(n), patterns, "{n}");
    }
    f
}

/// Names under a pattern suffix: each tries the patterns indexed there.
fn pattern_names() -> Vec<String> {
    let mut v = Vec::new();
    for i in 0..1_000 {
        let k = i % 100;
        v.push(format!("px{i}-{i}.telemetry{k}.example.com")); // a glob matches (or a regex misses)
        v.push(format!("rx{i}-42.telemetry{k}.example.com")); // a regex matches (or misses)
        v.push(format!("www{i}.telemetry{k}.example.com")); // tries 10 patterns, none matches
    }
    for n in [
        "sonar6-ist2-1.xx.fbcdn.net",
        "scontent-ist2-1.xx.fbcdn.net",
        "static.xx.fbcdn.net",
        "167db6c2-36d1-4a99-b3c6-83cabdec8876-netseer-ipaddr-assoc.xz.fbcdn.net",
        "video-sin6-3.xx.fbcdn.net",
        "edge-atlas-shv-01-ams2.facebook.com",
        "edge-chat.facebook.com",
        "star-mini.c10r.facebook.com",
    ] {
        // As often as the generated ones, so they weigh in the distribution.
        for _ in 0..100 {
            v.push(n.to_string());
        }
    }
    v
}

/// Common names: listed, below listed, not listed; only the few `facebook.com` names
/// are under a pattern suffix (the embedded `||edge-atlas-*.facebook.com^` and others).
fn names() -> Vec<String> {
    let mut v = Vec::new();
    for i in 0..2_000 {
        v.push(format!("ads{}.tracker{}.example", i * 37, (i * 37) % 997)); // listed
        v.push(format!(
            "deep.sub.t{}.metrics{}.example.net",
            i * 41,
            (i * 41) % 991
        )); // subdomain of listed
        v.push(format!("www.site{i}.example.org")); // not listed
        v.push(format!("cdn{i}.images.shop{i}.example.com")); // not listed, deep
    }
    v.extend(
        [
            "connect.facebook.net",
            "www.facebook.com",
            "x.an.facebook.com",
            "graph.facebook.com",
        ]
        .map(String::from),
    );
    v
}

fn distribution(label: &str, f: &Filter, names: &[String]) {
    let policy = Policy::new(
        f.categories(),
        f.list_defaults(),
        &Default::default(),
        &Default::default(),
    );
    let actions = policy.actions(None);
    // Warm up, then time each check on its own.
    for n in names {
        black_box(f.check(n, actions));
    }
    let mut samples: Vec<u64> = Vec::with_capacity(names.len() * 25);
    for _ in 0..25 {
        for n in names {
            let t = Instant::now();
            black_box(f.check(black_box(n), actions));
            samples.push(t.elapsed().as_nanos() as u64);
        }
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{label}, {} rules, {} checks: p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
        f.rule_count(),
        samples.len(),
        pct(0.50),
        pct(0.99),
        pct(0.999),
        samples[samples.len() - 1]
    );
}

/// One criterion case: `names` checked in turn against `f`.
fn case(c: &mut Criterion, id: &str, f: &Filter, names: &[String]) {
    let policy = Policy::new(
        f.categories(),
        f.list_defaults(),
        &Default::default(),
        &Default::default(),
    );
    let actions = policy.actions(None);
    let mut i = 0;
    c.bench_function(id, |b| {
        b.iter(|| {
            i = (i + 1) % names.len();
            black_box(f.check(black_box(&names[i]), actions))
        })
    });
}

fn bench(c: &mut Criterion) {
    case(c, "filter_check_200k_rules", &filter_200k(), &names());
    case(
        c,
        "filter_check_1m_rules",
        &filter_generated(500_000),
        &names(),
    );
    let (plain, patterns) = (filter_user_list(false), filter_user_list(true));
    let common = names();
    case(c, "filter_check_common_no_patterns", &plain, &common);
    case(c, "filter_check_common_1k_patterns", &patterns, &common);
    case(
        c,
        "filter_check_pattern_suffix_1k_patterns",
        &patterns,
        &pattern_names(),
    );
}

criterion_group!(benches, bench);

fn main() {
    distribution("filter check", &filter_200k(), &names());
    distribution("filter check", &filter_generated(500_000), &names());
    let (plain, patterns) = (filter_user_list(false), filter_user_list(true));
    let common = names();
    distribution("common names, no patterns", &plain, &common);
    distribution("common names, 1k user patterns", &patterns, &common);
    distribution(
        "pattern-suffix names, 1k user patterns",
        &patterns,
        &pattern_names(),
    );
    // Where the time under pattern suffixes goes: each kind of name on its own.
    let by_kind = pattern_names();
    for (kind, keep) in [
        ("  px* names (glob keys)", "px"),
        ("  rx* names (regex keys)", "rx"),
        ("  www* names (no pattern matches)", "www"),
    ] {
        let v: Vec<String> = by_kind
            .iter()
            .filter(|n| n.starts_with(keep) && n.contains(".telemetry"))
            .cloned()
            .collect();
        distribution(kind, &patterns, &v);
    }
    let mut fixed: Vec<String> = by_kind
        .iter()
        .filter(|n| !n.contains(".telemetry"))
        .cloned()
        .collect();
    fixed.dedup();
    for n in fixed {
        distribution(&format!("  {n}"), &patterns, &vec![n.clone(); 100]);
    }
    let mut all = common;
    all.extend(pattern_names());
    distribution("all names, 1k user patterns", &patterns, &all);
    benches();
    Criterion::default().configure_from_args().final_summary();
}
