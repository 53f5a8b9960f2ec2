//! Builds the compose stand-in's binaries (the fake cAdvisor exporter, the fake central
//! services) as standalone binaries, so every crate that depends on testkit (not only testkit's
//! own tests) finds them at `env!("TESTKIT_FAKE_EXPORTER")` / `env!("TESTKIT_FAKE_CENTRAL")`: cargo only
//! builds a dependency's `[[bin]]` targets for that package's own tests.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // (source, binary name, env var naming its path)
    for (src, name, var) in [
        (
            "src/bin/fake-cadvisor.rs",
            "fake-cadvisor",
            "TESTKIT_FAKE_EXPORTER",
        ),
        (
            "src/bin/fake-central.rs",
            "fake-central",
            "TESTKIT_FAKE_CENTRAL",
        ),
    ] {
        println!("cargo:rerun-if-changed={src}");
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join(name);
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
            .expect("run rustc for a stand-in binary");
        assert!(status.success(), "compiling {src} failed");
        println!("cargo:rustc-env={var}={}", out.display());
    }
}
