//! Builds the fake cAdvisor exporter as a standalone binary, so every crate that depends on
//! testkit (not only testkit's own tests) finds it at `env!("TESTKIT_FAKE_EXPORTER")`: cargo only
//! builds a dependency's `[[bin]]` targets for that package's own tests.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "src/bin/fake-cadvisor.rs";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-changed=build.rs");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("fake-cadvisor");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2024",
            "-C",
            "opt-level=2",
            "-C",
            "strip=symbols",
            "-C",
            "panic=abort",
            "-o",
        ])
        .arg(&out)
        .arg(src)
        .status()
        .expect("run rustc for the fake exporter");
    assert!(status.success(), "compiling {src} failed");
    println!("cargo:rustc-env=TESTKIT_FAKE_EXPORTER={}", out.display());
}
