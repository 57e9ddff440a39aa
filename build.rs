//! Link flags for the `metaguard` binary (the 8 MiB gate, docs/install.md "Footprint").
//! On Linux with glibc, relative relocations are packed (`-z pack-relative-relocs`,
//! DT_RELR): the binary then needs glibc >= 2.36 at run time (Debian 12, Raspberry Pi
//! OS bookworm); older systems use the static musl build. On x86_64 glibc, where rustc
//! links with its own LLD, identical functions are folded too (`--icf=all`: code only,
//! LLD keeps read-only data apart; Rust promises no unique function addresses).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
            println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
        }
    }
}
