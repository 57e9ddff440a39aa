//! The per-query paths without sockets: a cache hit and a blocked name answered from
//! the raw packet (parse, filter check, cache lookup, answer written), and one writer
//! batch of 500 hits into a real SQLite file.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use metaguard::cache::{Answer, Cache, CacheConfig};
use metaguard::clients::Device;
use metaguard::filter::{BlockResponse, Filter, FilterConfig};
use metaguard::policy::Action;
use metaguard::server::wire;
use metaguard::store::{self, HitEvent, StoreConfig};

/// A stub resolver's query for `name` (A, with an OPT record).
fn query(name: &str) -> Vec<u8> {
    let mut p = vec![0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in name.split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 1, 0, 1]);
    p.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    p
}

fn bench(c: &mut Criterion) {
    let filter = Filter::build(
        metaguard::lists::sources(&FilterConfig {
            lists_dir: "/nonexistent".into(),
            ..Default::default()
        })
        .expect("embedded lists"),
    );
    let actions = vec![Action::Block; 16];
    let cache = Cache::new(&CacheConfig::default());
    let owner = Name::from_str("www.example.com.").unwrap();
    let answer = Answer {
        rcode: ResponseCode::NoError,
        answers: vec![Record::from_rdata(
            owner,
            3600,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
        )],
        ..Default::default()
    };
    cache.insert(
        "www.example.com",
        RecordType::A,
        Default::default(),
        &answer,
    );

    let mut name = String::with_capacity(256);
    let mut out = Vec::with_capacity(1232);
    let hit = query("www.Example.com");
    c.bench_function("cache_hit_path", |b| {
        b.iter(|| {
            let q = wire::Query::parse(black_box(&hit), &mut name).unwrap();
            let v = filter.check(&name, &actions);
            let cached = cache
                .lookup(&name, RecordType::from(q.qtype), q.dnssec_bits())
                .unwrap();
            wire::cached(&mut out, &q, cached.wire().unwrap(), cached.elapsed());
            black_box((v, out.len()))
        })
    });
    let blocked = query("connect.facebook.net");
    c.bench_function("blocked_path", |b| {
        b.iter(|| {
            let q = wire::Query::parse(black_box(&blocked), &mut name).unwrap();
            let v = filter.check(&name, &actions);
            assert!(v.is_block());
            wire::blocked(&mut out, &q, BlockResponse::Null, 10, "pixel");
            black_box(out.len())
        })
    });

    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        db: dir.path().join("bench.db"),
        // The writer holds the events until the flush: one transaction of 500.
        batch_size: std::num::NonZeroUsize::new(10_000).unwrap(),
        batch_interval: Duration::from_secs(60),
        ..StoreConfig::default()
    };
    let (logger, writer) = store::start(&cfg);
    let device = Device::from_addr("192.168.1.5".parse().unwrap());
    let mut group = c.benchmark_group("writer");
    group.sample_size(20);
    group.bench_function("batch_of_500_hits", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                for j in 0..500 {
                    logger.hit(HitEvent {
                        ts: 1_790_000_000 + i as i64,
                        device: device.clone(),
                        name: format!("n{}.facebook.com", j % 50),
                        qtype: 1,
                        category: "pixel".into(),
                        action: Action::Block,
                        rule: Some("facebook.com".into()),
                        cname_origin: None,
                    });
                }
                // The events are queued; time the write of the batch alone.
                let began = Instant::now();
                writer.flush();
                total += began.elapsed();
            }
            total
        })
    });
    group.finish();
    assert_eq!(logger.dropped(), 0);
}

criterion_group!(benches, bench);
criterion_main!(benches);
