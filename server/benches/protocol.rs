//! Micro-benchmarks of the pure protocol code that runs on every request: scope
//! parsing, metadata header parsing and formatting, and range resolution.
//!
//! Why: these sit on the hot path of every object request; a regression here costs
//! latency across the whole API.

// `criterion_main!` generates an undocumented `main`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue};
use strata_server::http::range::parse_range;
use strata_server::object::id::{percent_decode_param, Scopes};
use strata_server::object::Metadata;

fn scopes(c: &mut Criterion) {
    c.bench_function("scopes/parse_two", |b| {
        b.iter(|| Scopes::parse(black_box("org=12345;project=67890")).unwrap())
    });
    c.bench_function("scopes/decode_and_parse", |b| {
        b.iter(|| {
            let decoded = percent_decode_param(black_box("org%3D12345;project=67890")).unwrap();
            Scopes::parse(&decoded).unwrap()
        })
    });
}

fn insert_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert("content-encoding", HeaderValue::from_static("zstd"));
    h.insert("x-sn-expiration", HeaderValue::from_static("ttl:30d"));
    h.insert("x-sn-origin", HeaderValue::from_static("10.0.0.1"));
    h.insert(
        "x-sn-filename",
        HeaderValue::from_static("r%C3%A9port-%F0%9F%93%84.pdf"),
    );
    h.insert(
        "x-snme-release",
        HeaderValue::from_static("100%25 v%C3%A9rsion"),
    );
    h.insert("x-snme-dist", HeaderValue::from_static("android"));
    h
}

fn metadata(c: &mut Criterion) {
    let headers = insert_headers();
    let now = SystemTime::now();
    c.bench_function("metadata/from_headers", |b| {
        b.iter(|| Metadata::from_headers(black_box(&headers), now).unwrap())
    });
    let mut meta = Metadata::from_headers(&headers, now).unwrap();
    meta.size = Some(123_456);
    c.bench_function("metadata/to_headers", |b| {
        b.iter(|| {
            let mut out = HeaderMap::new();
            black_box(&meta).to_headers(&mut out);
            out
        })
    });
}

fn range(c: &mut Criterion) {
    let value = HeaderValue::from_static("bytes=1024-65535");
    c.bench_function("range/parse_and_resolve", |b| {
        b.iter(|| {
            parse_range(black_box(&value))
                .unwrap()
                .unwrap()
                .resolve(black_box(1_000_000))
                .unwrap()
        })
    });
}

criterion_group!(benches, scopes, metadata, range);
criterion_main!(benches);
