//! Filter check speed with 200k rules: criterion for the mean, plus a per-check
//! latency distribution (p50/p99/max) printed once, the figure the issue targets.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group};
use metaguard::filter::{Filter, ListFormat, ListSource};
use metaguard::lists;
use metaguard::policy::Policy;

/// Embedded Meta lists plus 100k hosts lines and 100k plain domains.
fn filter_200k() -> Filter {
    let mut sources = lists::sources(&metaguard::filter::FilterConfig {
        lists_dir: "/nonexistent".into(),
        ..Default::default()
    })
    .expect("embedded lists");
    let hosts: String = (0..100_000)
        .map(|i| format!("0.0.0.0 ads{i}.tracker{}.example\n", i % 997))
        .collect();
    let domains: String = (0..100_000)
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
            default_action: None,
            text,
        });
    }
    Filter::build(sources)
}

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

fn distribution() {
    let f = filter_200k();
    let policy = Policy::new(
        f.categories(),
        f.list_defaults(),
        &Default::default(),
        &Default::default(),
    );
    let actions = policy.actions(None);
    let names = names();
    // Warm up, then time each check on its own.
    for n in &names {
        black_box(f.check(n, actions));
    }
    let mut samples: Vec<u64> = Vec::with_capacity(names.len() * 25);
    for _ in 0..25 {
        for n in &names {
            let t = Instant::now();
            black_box(f.check(black_box(n), actions));
            samples.push(t.elapsed().as_nanos() as u64);
        }
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "filter check, {} rules, {} checks: p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
        f.rule_count(),
        samples.len(),
        pct(0.50),
        pct(0.99),
        pct(0.999),
        samples[samples.len() - 1]
    );
}

fn bench(c: &mut Criterion) {
    let f = filter_200k();
    let policy = Policy::new(
        f.categories(),
        f.list_defaults(),
        &Default::default(),
        &Default::default(),
    );
    let actions = policy.actions(None);
    let names = names();
    let mut i = 0;
    c.bench_function("filter_check_200k_rules", |b| {
        b.iter(|| {
            i = (i + 1) % names.len();
            black_box(f.check(black_box(&names[i]), actions))
        })
    });
}

criterion_group!(benches, bench);

fn main() {
    distribution();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
