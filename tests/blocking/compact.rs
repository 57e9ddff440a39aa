//! The compact filter (large lists in `fst` maps, issue 16) against the hash-map engine
//! kept as the reference (`compact_above: usize::MAX`): the same verdicts (action, list,
//! line, category, rule) on every list in `shared/testdata/lists/`, on a synthetic list
//! with the corner cases (a name and `*.name` in one list, repeats, patterns, IDNs, bad
//! lines), and on random names; and the compiled-list cache (cold, warm, corrupt) gives
//! the same filter again.

use std::sync::OnceLock;

use metaguard::filter::{BuildOptions, Filter, ListFormat, ListSource, normalize_query};
use metaguard::policy::Action;
use proptest::prelude::*;

fn path(file: &str) -> String {
    format!(
        "{}/../shared/testdata/lists/{file}",
        env!("CARGO_MANIFEST_DIR")
    )
}

const FILES: &[&str] = &[
    "bundy01-meta-domains.txt",
    "easyprivacy.txt",
    "hagezi-personal-domains.txt",
    "jmdugan-facebook-all.hosts",
    "stevenblack-hosts",
];

/// A large domain list with the corner cases, padded past the compact threshold.
fn synthetic() -> String {
    let mut t = String::from(
        "# Title: synthetic\n*.both.example\nboth.example\nrepeat.example\nrepeat.example\n\
         ||sonar*.xx.fbcdn.net^\n/^pixel[0-9]+\\.tracker\\.example$/\nbücher.example\n\
         bad/name\n||plain.example^\n*.sub.only.example\nUPPER.Example.\n\
         facebook.com\ngraph.facebook.com\n",
    );
    for i in 0..6000 {
        t.push_str(&format!("n{i}.pad{}.example\n", i % 37));
    }
    t
}

/// A small list (hash map either way) sharing names with the large ones.
const SMALL: &str = "facebook.com\n*.both.example\nrepeat.example\nxx.fbcdn.net\nads.example\n";

fn sources(from_files: bool) -> Vec<ListSource> {
    let mut out = Vec::new();
    let src = |name: &str, text: String, file: Option<std::path::PathBuf>, format| ListSource {
        name: name.into(),
        category: format!("cat-{name}"),
        origin: "test".into(),
        format,
        file,
        default_action: None,
        text,
    };
    out.push(src("small", SMALL.into(), None, ListFormat::Domains));
    for f in FILES {
        if from_files {
            out.push(src(
                f,
                String::new(),
                Some(path(f).into()),
                ListFormat::Auto,
            ));
        } else {
            let bytes = std::fs::read(path(f)).unwrap();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            out.push(src(f, text, None, ListFormat::Auto));
        }
    }
    out.push(src("synthetic", synthetic(), None, ListFormat::Domains));
    out.push(src("small2", SMALL.into(), None, ListFormat::Domains));
    out
}

/// Actions by category id: every kind, so precedence between lists is exercised.
const ACTIONS: &[Action] = &[
    Action::Block,
    Action::Allow,
    Action::Log,
    Action::Block,
    Action::Log,
    Action::Block,
    Action::Allow,
    Action::Block,
    Action::Log,
];

struct Engines {
    reference: Filter,
    compact: Filter,
    names: Vec<String>,
}

fn engines() -> &'static Engines {
    static E: OnceLock<Engines> = OnceLock::new();
    E.get_or_init(|| {
        let reference = Filter::build_with(
            sources(false),
            &BuildOptions {
                compact_above: usize::MAX,
                cache_dir: None,
            },
        );
        let compact = Filter::build(sources(false));
        // Every name the lists hold (as written), to check each one and its neighbours.
        let mut names = Vec::new();
        for f in FILES {
            let bytes = std::fs::read(path(f)).unwrap();
            for line in String::from_utf8_lossy(&bytes).lines() {
                if let Some(w) = line.split_whitespace().last()
                    && !w.starts_with('#')
                {
                    names.push(normalize_query(
                        w.trim_start_matches("||").trim_end_matches('^'),
                    ));
                }
            }
        }
        for line in synthetic().lines().chain(SMALL.lines()) {
            names.push(normalize_query(line.trim_start_matches("*.")));
        }
        Engines {
            reference,
            compact,
            names,
        }
    })
}

fn same(a: &Filter, b: &Filter, name: &str) {
    let (va, vb) = (a.check(name, ACTIONS), b.check(name, ACTIONS));
    assert_eq!(va, vb, "{name}");
    assert_eq!(va.rule_text(name), vb.rule_text(name), "{name}");
}

#[test]
fn same_counts_and_verdicts_on_every_listed_name() {
    let e = engines();
    for (a, b) in e.reference.lists().iter().zip(e.compact.lists()) {
        assert_eq!(
            (a.format, a.rules, a.bad_lines),
            (b.format, b.rules, b.bad_lines),
            "{}",
            a.name
        );
    }
    let mut blocked = 0;
    for (i, n) in e.names.iter().enumerate() {
        let more = if i % 8 == 0 {
            vec![format!("a.b.{n}"), format!("{n}.evil")]
        } else {
            vec![]
        };
        for name in [n.clone(), format!("x.{n}")].into_iter().chain(more) {
            same(&e.reference, &e.compact, &name);
            blocked += usize::from(e.compact.check(&name, ACTIONS).is_block());
        }
    }
    assert!(blocked > 100_000, "{blocked}");
    for n in [
        "both.example",
        "a.both.example",
        "repeat.example",
        "sonar12.xx.fbcdn.net",
        "a.sonar1.xx.fbcdn.net",
        "pixel7.tracker.example",
        "xn--bcher-kva.example",
        "only.example",
        "x.sub.only.example",
        "sub.only.example",
        "upper.example",
        "graph.facebook.com",
        "com",
        "",
        "..",
        "a..b.example",
    ] {
        same(&e.reference, &e.compact, n);
    }
}

/// Labels drawn from the lists' own names, so random names often hit rules.
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{1,8}",
        prop::sample::select(vec![
            "com",
            "net",
            "facebook",
            "fbcdn",
            "xx",
            "example",
            "both",
            "graph",
            "www",
            "doubleclick",
            "google",
            "analytics",
            "ads",
            "sonar1",
            "pad3",
            "n30",
        ])
        .prop_map(String::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_names_get_the_same_verdict(
        labels in prop::collection::vec(label(), 1..6),
        listed in any::<prop::sample::Index>(),
        prefix in prop::collection::vec(label(), 0..3),
    ) {
        let e = engines();
        same(&e.reference, &e.compact, &labels.join("."));
        let mut n = prefix.join(".");
        if !n.is_empty() {
            n.push('.');
        }
        n.push_str(listed.get::<String>(&e.names));
        same(&e.reference, &e.compact, &n);
    }
}

#[test]
fn cache_cold_warm_and_corrupt_give_the_same_filter() {
    let e = engines();
    let dir = tempfile::tempdir().unwrap();
    let opts = BuildOptions {
        cache_dir: Some(dir.path().join("compiled")),
        ..Default::default()
    };
    let check = |f: &Filter| {
        for (a, b) in e.reference.lists().iter().zip(f.lists()) {
            assert_eq!((a.rules, a.bad_lines), (b.rules, b.bad_lines), "{}", a.name);
        }
        for n in e.names.iter().step_by(29) {
            same(&e.reference, f, n);
            same(&e.reference, f, &format!("x.{n}"));
        }
    };
    let cold = Filter::build_with(sources(true), &opts);
    check(&cold);
    let files: Vec<_> = std::fs::read_dir(dir.path().join("compiled"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    // The four large hosts/domain files (easyprivacy is ABP: adblock compiles it).
    assert_eq!(files.len(), 4, "{files:?}");
    drop(cold);
    let warm = Filter::build_with(sources(true), &opts);
    check(&warm);
    drop(warm);
    // Damaged cache files are ignored and rebuilt.
    for (i, f) in files.iter().enumerate() {
        let mut b = std::fs::read(f).unwrap();
        if i % 2 == 0 {
            b.truncate(b.len() / 2);
        } else {
            let n = b.len() - 10;
            b[n] ^= 0xff;
        }
        std::fs::write(f, b).unwrap();
    }
    let rebuilt = Filter::build_with(sources(true), &opts);
    check(&rebuilt);
}
