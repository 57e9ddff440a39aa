//! Link flags for the `metaguard` binary. On Linux with glibc, relative relocations are
//! packed (`-z pack-relative-relocs`, DT_RELR): about 430 kB smaller, and the binary
//! then needs glibc >= 2.36 at run time (Debian 12, Raspberry Pi OS bookworm); older
//! systems use the static musl build. docs/install.md ("Footprint") has the figures.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
