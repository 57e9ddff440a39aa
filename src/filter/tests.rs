//! Unit tests of the compiled filter: suffix rules, precedence, provenance, ABP rules,
//! bad lines and name normalization (pattern rules are tested in `pattern.rs`).

use super::*;
use crate::policy::Policy;

/// A list of `format` read from `text`.
pub(crate) fn list(name: &str, category: &str, format: ListFormat, text: &str) -> ListSource {
    ListSource {
        name: name.into(),
        category: category.into(),
        origin: "test".into(),
        format,
        file: None,
        default_action: None,
        text: text.into(),
    }
}

fn verdict(f: &Filter, name: &str) -> (Option<Action>, Option<String>, Option<String>) {
    let mut actions = HashMap::new();
    for (id, n) in f.categories().iter() {
        let a = match n {
            "allow" => Action::Allow,
            "first-party" => Action::Log,
            _ => Action::Block,
        };
        actions.insert(id, a);
    }
    let p = Policy::new(
        f.categories(),
        &actions,
        &Default::default(),
        &Default::default(),
    );
    let v = f.check(&normalize_query(name), p.actions(None));
    let cat = v
        .matched
        .as_ref()
        .map(|m| f.categories().name(m.category).to_string());
    (v.action, cat, v.rule_text(&normalize_query(name)))
}

#[test]
fn domain_rules_match_name_and_subdomains_only() {
    let f = Filter::build(vec![list("l", "pixel", ListFormat::Domains, "x.com\n")]);
    assert_eq!(verdict(&f, "x.com").0, Some(Action::Block));
    assert_eq!(verdict(&f, "a.b.X.com.").0, Some(Action::Block));
    assert_eq!(verdict(&f, "x.com.evil.example").0, None);
    assert_eq!(verdict(&f, "notx.com").0, None);
    assert_eq!(verdict(&f, "com").0, None);
}

#[test]
fn most_specific_rule_of_the_strongest_action_is_reported() {
    let f = Filter::build(vec![
        list(
            "fp",
            "first-party",
            ListFormat::Domains,
            "facebook.com\ngraph.facebook.com\n",
        ),
        list(
            "an",
            "audience-network",
            ListFormat::Domains,
            "an.facebook.com\n",
        ),
    ]);
    let (a, cat, rule) = verdict(&f, "x.an.facebook.com");
    assert_eq!(a, Some(Action::Block));
    assert_eq!(cat.as_deref(), Some("audience-network"));
    assert_eq!(rule.as_deref(), Some("an.facebook.com"));
    let (a, _, rule) = verdict(&f, "graph.facebook.com");
    assert_eq!(a, Some(Action::Log));
    assert_eq!(rule.as_deref(), Some("graph.facebook.com"));
}

#[test]
fn allow_beats_block_and_provenance_is_kept() {
    let f = Filter::build(vec![
        list(
            "b",
            "custom",
            ListFormat::Hosts,
            "# c\n0.0.0.0 ads.example\n",
        ),
        list("a", "allow", ListFormat::Domains, "ok.ads.example\n"),
    ]);
    assert_eq!(verdict(&f, "x.ads.example").0, Some(Action::Block));
    assert_eq!(verdict(&f, "ok.ads.example").0, Some(Action::Allow));
    let v = {
        let p = Policy::new(
            f.categories(),
            &HashMap::from([(0, Action::Block), (1, Action::Allow)]),
            &Default::default(),
            &Default::default(),
        );
        f.check("x.ads.example", p.actions(None))
    };
    let m = v.matched.unwrap();
    assert_eq!((m.list, m.line), (0, 2));
}

#[test]
fn abp_rules_exceptions_important_badfilter() {
    let text = "[Adblock Plus 2.0]\n! c\n||track.example^\n@@||ok.track.example^\n||imp.example^$important\n@@||imp.example^\n||bad.example^\n||bad.example^$badfilter\n||noanchor.example\nexample.org##.ad\n";
    let f = Filter::build(vec![list("abp", "custom", ListFormat::Auto, text)]);
    assert_eq!(f.lists()[0].format, ListFormat::Abp);
    assert_eq!(verdict(&f, "a.track.example").0, Some(Action::Block));
    assert_eq!(verdict(&f, "ok.track.example").0, Some(Action::Allow));
    assert_eq!(verdict(&f, "imp.example").0, Some(Action::Block));
    assert_eq!(verdict(&f, "bad.example").0, None);
    assert_eq!(verdict(&f, "track.example.evil.com").0, None);
    let (_, _, rule) = verdict(&f, "a.track.example");
    assert_eq!(rule.as_deref(), Some("||track.example^"));
    let p = Policy::new(
        f.categories(),
        &HashMap::from([(0, Action::Block)]),
        &Default::default(),
        &Default::default(),
    );
    let m = f.check("a.track.example", p.actions(None)).matched.unwrap();
    assert_eq!(m.line, 3);
}

#[test]
fn wildcard_domain_rule_skips_the_apex() {
    let f = Filter::build(vec![list(
        "w",
        "custom",
        ListFormat::Domains,
        "*.wild.example\n",
    )]);
    assert_eq!(verdict(&f, "wild.example").0, None);
    assert_eq!(verdict(&f, "a.wild.example").0, Some(Action::Block));
}

#[test]
fn bad_lines_are_counted_and_skipped() {
    let f = Filter::build(vec![list(
        "d",
        "custom",
        ListFormat::Domains,
        "a.com\nnot a domain\nb.com\nhttp://x/\n",
    )]);
    assert_eq!(f.lists()[0].rules, 2);
    assert_eq!(f.lists()[0].bad_lines, 2);
}

#[test]
fn name_key_matches_normalize_query() {
    use std::str::FromStr;
    for raw in [
        "WWW.Example.COM.",
        "a-b_c.x.",
        "xn--bcher-kva.example.",
        ".",
        "*.wild.example.",
        "we\\.ird.example.",
    ] {
        let n = hickory_proto::rr::Name::from_str(raw).unwrap();
        assert_eq!(name_key(&n), normalize_query(&n.to_ascii()), "{raw}");
    }
}

#[test]
fn idn_rules_match_punycode_queries() {
    let f = Filter::build(vec![list(
        "d",
        "custom",
        ListFormat::Domains,
        "bücher.example\n",
    )]);
    assert_eq!(verdict(&f, "xn--bcher-kva.example").0, Some(Action::Block));
    assert_eq!(verdict(&f, "www.BÜCHER.example").0, Some(Action::Block));
}
