//! Fuzz target: a raw packet through the server's parse path, then the filter verdict
//! for its question (the filter built once from the lists compiled into the binary).
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;

use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use libfuzzer_sys::fuzz_target;
use metaguard::config::Config;
use metaguard::filter::{Filter, name_key};
use metaguard::policy::Policy;

struct Fixture {
    filter: Filter,
    policy: Policy,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut cfg = Config::default();
        cfg.filter.lists_dir = "/nonexistent/metaguard-fuzz".into();
        let sources = metaguard::lists::all_sources(&cfg).unwrap_or_default();
        let filter = Filter::build(sources);
        let policy = Policy::new(
            filter.categories(),
            filter.list_defaults(),
            &cfg.categories,
            &cfg.groups,
        );
        Fixture { filter, policy }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    // The listener's own pre-checks: too short or a response is never parsed.
    if data.len() < 12 || data[2] & 0x80 != 0 {
        return;
    }
    let src = SocketAddr::from(([127, 0, 0, 1], 5353));
    let Ok(req) = Request::from_bytes(data.to_vec(), src, Protocol::Udp) else {
        return;
    };
    let _ = req.max_payload();
    if let Some(e) = req.edns.as_ref() {
        let _ = metaguard::clients::mac_from_edns(e);
    }
    for q in req.queries.queries() {
        let name = name_key(q.name());
        let _ = f.filter.check(&name, f.policy.actions(None));
    }
});
