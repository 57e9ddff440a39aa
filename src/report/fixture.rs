//! A seeded generator of hit logs for tests and benches. It writes through the real
//! store (`store::start`, `Logger::hit`, `Logger::query_at`, `WriterHandle::shutdown`),
//! so rollups, totals and devices are what `serve` would have written; [`events`]
//! replays the same events so tests can count them independently.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use crate::clients::Device;
use crate::policy::Action;
use crate::store::{self, HitEvent, StoreConfig};

/// A device of the fixture.
#[derive(Debug, Clone)]
pub struct FixtureDevice {
    pub name: Option<String>,
    pub mac: Option<String>,
    /// Relative activity (hits per day = `weight × spec.hits_per_day`).
    pub weight: f64,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct FixtureSpec {
    pub seed: u64,
    pub devices: Vec<FixtureDevice>,
    /// Unix seconds, start included, end excluded.
    pub start: i64,
    pub end: i64,
    /// Mean Meta hits per device per day (times the device's weight).
    pub hits_per_day: f64,
    /// Non-Meta queries counted per Meta hit (for `query_totals`).
    pub other_queries_per_hit: u32,
}

impl FixtureSpec {
    /// `n` devices named `device-1`… with MACs, over `start..end`.
    pub fn household(seed: u64, n: usize, start: i64, end: i64, hits_per_day: f64) -> Self {
        FixtureSpec {
            seed,
            devices: (0..n)
                .map(|i| FixtureDevice {
                    name: Some(format!("device-{}", i + 1)),
                    mac: Some(format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256)),
                    weight: 0.5 + (i % 4) as f64 * 0.5,
                })
                .collect(),
            start,
            end,
            hits_per_day,
            other_queries_per_hit: 9,
        }
    }
}

/// (name, category, action) the generator picks from; weights by repetition.
pub(crate) const DOMAINS: &[(&str, &str, Action)] = &[
    ("connect.facebook.net", "pixel", Action::Block),
    ("connect.facebook.net", "pixel", Action::Block),
    ("pixel.facebook.com", "pixel", Action::Block),
    ("an.facebook.com", "audience-network", Action::Block),
    ("graph.accountkit.com", "sdk-telemetry", Action::Block),
    ("atdmt.com", "ads-measurement", Action::Block),
    ("dit.whatsapp.net", "app-telemetry", Action::Block),
    ("graph.facebook.com", "first-party", Action::Log),
    ("graph.facebook.com", "first-party", Action::Log),
    ("www.facebook.com", "first-party", Action::Log),
    ("i.instagram.com", "first-party", Action::Log),
    ("staticxx.facebook.com", "social-widgets", Action::Log),
    ("www.meta.ai", "meta-ai", Action::Log),
    ("graph.oculus.com", "quest", Action::Log),
];

/// splitmix64: small, seeded, the same on every platform.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The store's view of fixture device `i`.
pub(crate) fn device_info(spec: &FixtureSpec, i: usize) -> Device {
    let addr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10 + (i % 240) as u8));
    let d = &spec.devices[i];
    let mut info = match &d.mac {
        Some(m) => Device::from_mac(m.parse().expect("a fixture MAC"), addr),
        None => Device::from_addr(addr),
    };
    info.name = d.name.as_deref().map(Into::into);
    info
}

/// The fixture's hits in time order, the same for the same spec.
pub fn events(spec: &FixtureSpec) -> impl Iterator<Item = HitEvent> + '_ {
    let mut rng = Rng::new(spec.seed);
    let infos: Vec<Device> = (0..spec.devices.len())
        .map(|i| device_info(spec, i))
        .collect();
    let days = (spec.end - spec.start + 86399) / 86400;
    (0..days).flat_map(move |day| {
        let day_start = spec.start + day * 86400;
        let day_end = (day_start + 86400).min(spec.end);
        let mut out = Vec::new();
        for (i, d) in spec.devices.iter().enumerate() {
            let mean = spec.hits_per_day * d.weight;
            // Between 0.5 and 1.5 times the mean, so weeks differ.
            let n = (mean * (0.5 + rng.below(1001) as f64 / 1000.0)).round() as u64;
            for _ in 0..n {
                let span = (day_end - day_start).max(1) as u64;
                // Busier in the evening: half the hits land in the last third of the day.
                let off = if rng.below(2) == 0 {
                    rng.below(span)
                } else {
                    span * 2 / 3 + rng.below(span / 3 + 1)
                };
                let ts = (day_start + off as i64).min(day_end - 1);
                let (name, category, action) = DOMAINS[rng.below(DOMAINS.len() as u64) as usize];
                out.push(HitEvent {
                    ts,
                    device: infos[i].clone(),
                    name: name.to_string(),
                    qtype: 1,
                    category: category.to_string(),
                    action,
                    rule: None,
                    cname_origin: None,
                });
            }
        }
        out.sort_by_key(|h| h.ts);
        out
    })
}

/// What the generator wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub hits: u64,
    pub(crate) queries: u64,
}

/// Why the fixture could not be written.
#[derive(Debug, thiserror::Error)]
#[error("fixture: {0}")]
pub struct FixtureError(pub String);

/// Write the fixture into `db` through the store's writer (keeping everything:
/// no retention, no size cap).
pub fn write(db: &Path, spec: &FixtureSpec) -> Result<Written, FixtureError> {
    let cfg = StoreConfig {
        db: db.to_path_buf(),
        retention_days: 0,
        rollup_retention_days: 0,
        max_db_size_mb: 0,
        batch_size: std::num::NonZeroUsize::new(5000).unwrap(),
        channel_capacity: std::num::NonZeroUsize::new(200_000).unwrap(),
        ..StoreConfig::default()
    };
    let (logger, handle) = store::start(&cfg);
    let mut w = Written::default();
    for h in events(spec) {
        let blocked = h.action == Action::Block;
        for _ in 0..spec.other_queries_per_hit {
            logger.query_at(h.ts, &h.device.key, false, false);
        }
        logger.query_at(h.ts, &h.device.key, true, blocked);
        w.queries += u64::from(spec.other_queries_per_hit) + 1;
        logger.hit(h);
        w.hits += 1;
        if w.hits % 100_000 == 0 && !handle.flush() {
            return Err(FixtureError("the store's writer stopped".into()));
        }
    }
    handle.shutdown();
    if logger.dropped() > 0 {
        return Err(FixtureError(format!(
            "the store dropped {} of {} events",
            logger.dropped(),
            w.hits
        )));
    }
    Ok(w)
}
