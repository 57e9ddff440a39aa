//! Precision of the embedded Meta lists: `metaguard check --format json` over our
//! evaluation set (tests/data/meta-names.tsv, built from sources other than the lists),
//! and the invariants that keep first-party Meta working.

use std::collections::HashMap;
use std::process::Command;

use metaguard::config::Config;
use metaguard::filter::{Filter, ListSource, parse};
use metaguard::lists::EMBEDDED;

struct Row {
    name: String,
    action: String,
    category: Option<String>,
}

fn rows() -> Vec<Row> {
    let text = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/meta-names.tsv"
    ));
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Row {
                name: f[0].to_string(),
                action: f[1].to_string(),
                category: (f[2] != "-").then(|| f[2].to_string()),
            }
        })
        .collect()
}

#[test]
fn default_policy_has_precision_and_recall_1_on_the_evaluation_set() {
    let rows = rows();
    assert!(rows.len() > 200);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("m.toml");
    std::fs::write(&cfg, "[filter]\nlists_dir = \"/nonexistent\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_metaguard"))
        .args([
            "check",
            "--format",
            "json",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .args(rows.iter().map(|r| r.name.as_str()))
        .output()
        .unwrap();
    assert!(out.status.success());
    let got: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), rows.len());

    // Per action: true positives, false positives, false negatives.
    let mut counts: HashMap<&str, (u32, u32, u32)> = HashMap::new();
    let mut wrong = Vec::new();
    for (row, v) in rows.iter().zip(&got) {
        let action = v["action"].as_str().unwrap();
        let category = v["category"].as_str().map(str::to_string);
        for a in ["block", "log"] {
            let c = counts.entry(a).or_default();
            match (row.action == a, action == a) {
                (true, true) => c.0 += 1,
                (false, true) => c.1 += 1,
                (true, false) => c.2 += 1,
                _ => {}
            }
        }
        if row.action != action || row.category != category {
            wrong.push(format!(
                "{}: want {} {:?}, got {action} {category:?}",
                row.name, row.action, row.category
            ));
        }
    }
    for (a, (tp, fp, fn_)) in &counts {
        let precision = *tp as f64 / (tp + fp).max(1) as f64;
        let recall = *tp as f64 / (tp + fn_).max(1) as f64;
        eprintln!("{a}: precision {precision:.3} recall {recall:.3} (tp {tp}, fp {fp}, fn {fn_})");
    }
    assert!(
        wrong.is_empty(),
        "{} wrong verdicts:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

fn embedded() -> Vec<(String, String, Vec<String>)> {
    EMBEDDED
        .iter()
        .map(|(file, text)| {
            let h = parse::read_header(text);
            let names = text
                .lines()
                .filter_map(|l| match parse::parse_domain_line(l) {
                    parse::Line::Rules(r) => Some(r[0].name.clone()),
                    parse::Line::Empty => None,
                    parse::Line::Bad => panic!("{file}: bad line {l:?}"),
                })
                .collect();
            (file.to_string(), h.action.unwrap(), names)
        })
        .collect()
}

#[test]
fn no_block_entry_covers_a_logged_entry() {
    // With "block beats log", a block rule above a first-party host would block it.
    let lists = embedded();
    for (bfile, baction, bnames) in &lists {
        if baction != "block" {
            continue;
        }
        for (lfile, laction, lnames) in &lists {
            if laction != "log" {
                continue;
            }
            for b in bnames {
                for l in lnames {
                    assert!(
                        !(l == b || l.ends_with(&format!(".{b}"))),
                        "{bfile}: {b} would block {l} of {lfile}"
                    );
                }
            }
        }
    }
}

#[test]
fn every_entry_is_in_one_list_and_every_list_loads_cleanly() {
    let mut seen: HashMap<String, String> = HashMap::new();
    for (file, _, names) in embedded() {
        for n in names {
            if let Some(other) = seen.insert(n.clone(), file.clone()) {
                panic!("{n} is in {file} and {other}");
            }
        }
    }
    let f = Filter::build(metaguard::lists::sources(&Config::default().filter).unwrap());
    for l in f.lists() {
        assert_eq!(l.bad_lines, 0, "{}", l.name);
        assert!(l.rules > 0, "{}", l.name);
    }
}

#[test]
fn first_party_hosts_never_block_even_through_their_cname_targets() {
    let f = Filter::build(
        EMBEDDED
            .iter()
            .map(|(file, text)| {
                let h = parse::read_header(text);
                ListSource {
                    name: file.to_string(),
                    category: h.category.unwrap(),
                    origin: "embedded".into(),
                    format: metaguard::filter::ListFormat::Domains,
                    default_action: h.action.as_deref().map(|a| match a {
                        "block" => metaguard::policy::Action::Block,
                        _ => metaguard::policy::Action::Log,
                    }),
                    text: text.to_string(),
                }
            })
            .collect(),
    );
    let policy = metaguard::policy::Policy::new(
        f.categories(),
        f.list_defaults(),
        &Default::default(),
        &Default::default(),
    );
    for name in [
        "www.facebook.com",
        "facebook.com",
        "m.facebook.com",
        "graph.facebook.com",
        "b-graph.facebook.com",
        "star-mini.c10r.facebook.com",
        "star.c10r.facebook.com",
        "scontent.xx.fbcdn.net",
        "static.xx.fbcdn.net",
        "instagram.com",
        "i.instagram.com",
        "graph.instagram.com",
        "scontent-ams2-1.cdninstagram.com",
        "web.whatsapp.com",
        "mmg.whatsapp.net",
        "g.whatsapp.net",
        "www.messenger.com",
        "edge-chat.messenger.com",
        "www.threads.net",
        "graph.oculus.com",
        "www.meta.com",
        "meta.ai",
    ] {
        let v = f.check(name, policy.actions(None));
        assert!(!v.is_block(), "{name} must not be blocked: {v:?}");
    }
}
