//! Regression tests, each named after the defect it pins (ripgrep's `tests/regression.rs`):
//! every one failed on the code that had the defect.
