//! Fuzz target: the list parsers line by line, and `Filter::build` + `check` on the text
//! as each list format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use metaguard::filter::parse::{ListFormat, detect_format, parse_domain_line, parse_hosts_line};
use metaguard::filter::{Filter, ListSource};
use metaguard::policy::Action;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let _ = detect_format(&text);
    for l in text.lines() {
        let _ = parse_hosts_line(l);
        let _ = parse_domain_line(l);
    }
    let format = match data.first().map(|b| b % 4) {
        Some(1) => ListFormat::Hosts,
        Some(2) => ListFormat::Domains,
        Some(3) => ListFormat::Abp,
        _ => ListFormat::Auto,
    };
    let names: Vec<String> = text
        .lines()
        .take(4)
        .map(|l| l.trim().trim_start_matches("||").to_ascii_lowercase())
        .collect();
    let f = Filter::build(vec![ListSource {
        name: "fuzz".into(),
        category: "fuzz".into(),
        origin: "fuzz".into(),
        format,
        default_action: None,
        text,
    }]);
    for n in &names {
        let _ = f.check(n, &[Action::Block, Action::Log, Action::Allow]);
    }
});
