//! `cargo run -p uniffi-bindgen -- generate --library <libnextword_ffi.so> --language kotlin ...`
//! generates the bindings with the uniffi version locked in Cargo.lock, not whatever
//! `uniffi-bindgen` happens to be installed on the machine.

fn main() {
    uniffi::uniffi_bindgen_main()
}
