//! The compiler as a teacher. For each fault of the catalogue that safe PyO3 rules out,
//! `tests/compile_fail/<fault>.rs` is the closest code a PyO3 author could write, and it must
//! fail to compile with the message recorded beside it (`<fault>.stderr`). Lesson 19 shows
//! those messages, so when rustc or PyO3 words them differently this test fails, and
//! `TRYBUILD=overwrite cargo test --test compile_fail` records the new ones for review.

#[test]
fn safe_pyo3_rejects_the_faults_it_rules_out() {
    trybuild::TestCases::new().compile_fail("tests/compile_fail/*.rs");
}
