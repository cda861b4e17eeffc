//! `magnet verify`'s library side: every case passes on every selected backend against the
//! CPU reference, and the comparison it reports is the one the test suite asserts with.

#[macro_use]
mod common;

use magnet::verify::{compare, format_table, verify_backend, Tol};
use magnet::Backend;

fn all_cases_pass<B: Backend>(b: &B) {
    let results = verify_backend(b).expect("reference pool");
    assert!(results.len() > 100, "{} cases", results.len());
    let failed: Vec<_> = results.iter().filter(|r| !r.passed()).cloned().collect();
    assert!(failed.is_empty(), "\n{}", format_table(&failed));
}

#[test]
fn every_case_passes_against_the_cpu() {
    for_each_backend!(|b| all_cases_pass(b));
}

#[test]
fn relative_error_matches_the_tolerance() {
    let tol = Tol::rel_abs(1e-5, 1e-6);
    // 1e-6 abs is a floor of 0.1 in magnitude for the relative error.
    let c = compare(&[1.0, 0.0, 2.0], &[1.0, 1e-6, 2.0 * (1.0 + 1e-5)], tol).expect("same length");
    assert!(c.passed(), "{c:?}");
    // Passing means a relative error of at most `rel`; these sit just below it.
    assert!(
        c.max_relative_error <= tol.rel && c.max_relative_error > 0.9 * tol.rel,
        "{c:?}"
    );
    let c = compare(&[1.0, f32::NAN], &[1.0f32, 0.0], tol).expect("same length");
    assert_eq!((c.bad, c.worst.map(|w| w.0)), (1, Some(1)));
    assert!(compare(&[1.0], &[1.0f32, 2.0], tol).is_err());
}
