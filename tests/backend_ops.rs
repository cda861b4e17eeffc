//! The backend test suite: every primitive of [`magnet::Backend`] on every backend selected by
//! `MAGNET_TEST_BACKENDS` (see `tests/common/mod.rs`), checked against naive float64 references
//! (`tests/common/reference.rs`), backwards against central finite differences of those
//! references, and bad input against a returned `Err`. Each tolerance is written beside its
//! assertion with the reason for its size.
//!
//! Shapes are small and awkward on purpose (batch 1 and 2, odd spatial sizes, channel counts 3,
//! 5 and 7) so that the whole suite stays fast on a software GPU.

#[macro_use]
mod common;

#[path = "backend_ops/conv.rs"]
mod conv;
#[path = "backend_ops/elementwise.rs"]
mod elementwise;
#[path = "backend_ops/layout.rs"]
mod layout;
#[path = "backend_ops/matmul.rs"]
mod matmul;
#[path = "backend_ops/norm.rs"]
mod norm;
#[path = "backend_ops/optim.rs"]
mod optim;
#[path = "backend_ops/pool.rs"]
mod pool;
#[path = "backend_ops/reduce.rs"]
mod reduce;
#[path = "backend_ops/resample.rs"]
mod resample;

use magnet::{Backend, HostTensor, TensorDesc};

use common::*;

fn memory_case<B: Backend>(b: &B) {
    for (i, n) in [1usize, 5, 1000].into_iter().enumerate() {
        let data = random_vec(n, 100 + i as u64);
        let host = HostTensor::new([n], data.clone()).expect("matching length");
        let buf = b.to_device(&host).expect("from_host");
        assert_eq!(b.len(&buf), n, "len [{}]", b.name());
        // Transfers copy bits: exact.
        assert_close(&download(b, &buf), &data, Tol::exact(), "upload/download");
        let mut dst = garbage(b, [n]);
        ok(b.copy(&buf, &mut dst), "copy");
        ok(b.sync(), "sync");
        assert_close(&download(b, &dst), &data, Tol::exact(), "copy");
        let back = b.to_host(&dst, host.shape()).expect("to_host");
        assert_eq!(back, host, "to_host [{}]", b.name());
    }
    let zero = b.alloc(&TensorDesc::f32([2, 3, 5])).expect("alloc");
    assert_close(
        &download(b, &zero),
        &[0.0f32; 30],
        Tol::exact(),
        "alloc is zeroed",
    );

    let mut four = zeros_len(b, 4);
    let five = zeros_len(b, 5);
    expect_err("upload of 5 values into 4 elements", || {
        b.upload(&[1.0; 5], &mut four)
    });
    expect_err("copy of 5 elements into 4", || b.copy(&five, &mut four));
}

#[test]
fn memory_round_trips_and_rejects_bad_lengths() {
    for_each_backend!(|b| memory_case(b));
}

#[test]
fn harness_parses_backend_lists() {
    let s = Selection::parse(" CPU , wgpu,");
    assert!(s.wants("cpu") && s.wants("wgpu") && !s.wants("cuda"));
    let all = Selection::parse("");
    assert!(all.wants("cuda") && !all.is_listed("cuda"));
}

#[test]
#[should_panic(expected = "unknown backend")]
fn harness_rejects_unknown_backend_names() {
    Selection::parse("cpu,metal");
}

#[test]
#[should_panic(expected = "listed in MAGNET_TEST_BACKENDS but is unavailable")]
fn harness_fails_on_a_listed_unavailable_backend() {
    Selection::parse("cpu,cuda").unavailable("cuda", "not compiled in");
}

#[test]
#[should_panic(expected = "worst at index 2")]
fn harness_assert_close_reports_the_worst_element() {
    assert_close(
        &[1.0, 2.0, 3.5, 4.1],
        &[1.0f64, 2.0, 3.0, 4.0],
        Tol::rel_abs(0.0, 0.2),
        "harness",
    );
}
