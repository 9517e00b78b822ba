//! The checked-in header is what cbindgen generates from the code now (`SHM_CAPI_BLESS=1`
//! rewrites it).

use std::path::Path;

#[test]
fn the_checked_in_header_is_generated_from_the_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::generate_with_config(dir, config).expect("cbindgen").write(&mut generated);
    let generated = String::from_utf8(generated).expect("UTF-8 header");
    let path = dir.join("include/shm_ipc.h");
    if std::env::var_os("SHM_CAPI_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("writing the header");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} differs from what cbindgen generates from crates/shm-capi/src: run \
         `SHM_CAPI_BLESS=1 cargo test -p shm-capi --test header` and commit the header",
        path.display()
    );
}
