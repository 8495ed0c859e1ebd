//! Release builds for x86_64 Linux link the functions a `nextword bench` run executes first
//! in `.text`, together (`orderfile.txt`, written by `orderfile.py`, which says why): the
//! code a keyboard session keeps resident drops from 14 MB to about 3 MB. The flag is lld's,
//! the linker rustc uses for this target; a listed name the binary lacks is skipped.

fn main() {
    println!("cargo:rerun-if-changed=orderfile.txt");
    let target = std::env::var("TARGET").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    if target == "x86_64-unknown-linux-gnu" && profile == "release" {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo");
        let orderfile = std::path::Path::new(&dir).join("orderfile.txt");
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            orderfile.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
