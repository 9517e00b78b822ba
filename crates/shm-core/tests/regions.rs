//! Single-process behaviour of regions: flush, private views, partial maps, operations, and the
//! exact error for every kind of bad input.

use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};

use shm_core::{
    page_size, AccessError, Advice, Backing, CreateError, CreateOptions, MapError, NameError, OpenError,
    OpenOptions, Region,
};

#[test]
fn flush_makes_bytes_visible_through_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let region = Region::create_file(&path, 8192).unwrap();
    region.write_at(5000, b"durable").unwrap();
    region.flush().unwrap();
    region.flush_async().unwrap();
    region.flush_range(5000, 7).unwrap();
    region.flush_async_range(4096, 100).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 8192);
    assert_eq!(&bytes[5000..5007], b"durable");
    assert!(region.flush_range(8000, 1000).is_err(), "a range past the end is refused");
}

#[test]
fn private_view_writes_stay_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, vec![7u8; 4096]).unwrap();
    let shared = Region::open_file(&path).unwrap();
    let private = OpenOptions::new().private().open_file(&path).unwrap();
    assert!(!private.is_shared() && private.is_writable());
    private.write_at(0, b"private").unwrap();
    private.flush().unwrap();
    let mut buf = [0u8; 7];
    private.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"private");
    shared.read_at(0, &mut buf).unwrap();
    assert_eq!(buf, [7u8; 7], "another mapping must not see a private write");
    assert_eq!(&std::fs::read(&path).unwrap()[..7], &[7u8; 7], "the file must not change");
}

#[test]
fn private_view_of_a_read_only_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro");
    std::fs::write(&path, vec![1u8; 4096]).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    let private = OpenOptions::new().private().open_file(&path).unwrap();
    private.write_at(0, b"x").unwrap();
    assert_eq!(std::fs::read(&path).unwrap()[0], 1);
}

#[test]
fn read_only_region_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    Region::create_file(&path, 4096).unwrap().write_at(0, b"abc").unwrap();
    let ro = OpenOptions::new().read_only().open_file(&path).unwrap();
    assert!(!ro.is_writable());
    assert_eq!(ro.write_at(0, b"x"), Err(AccessError::ReadOnly));
    let mut buf = [0u8; 3];
    ro.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"abc");
}

#[test]
fn partial_mapping_at_a_page_aligned_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big");
    let page = page_size();
    let mut data = vec![0u8; page * 4];
    data[page * 2..page * 2 + 5].copy_from_slice(b"third");
    std::fs::write(&path, &data).unwrap();
    let r = OpenOptions::new().offset(page as u64 * 2).len(page).open_file(&path).unwrap();
    assert_eq!((r.len(), r.offset()), (page, page as u64 * 2));
    let mut buf = [0u8; 5];
    r.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"third");
    r.write_at(page - 1, b"!").unwrap();
    r.flush().unwrap();
    assert_eq!(std::fs::read(&path).unwrap()[page * 3 - 1], b'!');
    // Without a length: from the offset to the end.
    let rest = OpenOptions::new().offset(page as u64).open_file(&path).unwrap();
    assert_eq!(rest.len(), page * 3);
}

#[test]
fn operations_on_a_region() {
    let r = Region::anonymous(1 << 20).unwrap();
    for advice in [Advice::Sequential, Advice::Random, Advice::WillNeed, Advice::Normal] {
        r.advise(advice).unwrap();
    }
    // Huge pages depend on the kernel's THP setting; when refused it is EINVAL, never a crash.
    if let Err(e) = r.advise(Advice::HugePage) {
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }
    r.advise_range(Advice::WillNeed, 4097, 10).unwrap();
    r.prefault().unwrap();
    r.lock().unwrap();
    r.unlock().unwrap();
    assert!(page_size().is_power_of_two() && page_size() >= 4096);
    assert!(r.advise_range(Advice::Normal, 1 << 20, 1).is_err());
    assert!(format!("{r:?}").contains("Anonymous"));
}

#[test]
fn access_out_of_bounds_is_an_error() {
    let r = Region::anonymous(100).unwrap();
    assert_eq!(r.len(), 100);
    assert_eq!(r.write_at(98, b"abc"), Err(AccessError::OutOfBounds { offset: 98, len: 3, region_len: 100 }));
    let mut buf = [0u8; 2];
    assert!(r.read_at(usize::MAX, &mut buf).is_err(), "overflowing offset is refused");
}

#[test]
fn created_files_are_0600_and_mode_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let r = Region::create_file(&a, 4096).unwrap();
    assert_eq!(std::fs::metadata(&a).unwrap().permissions().mode() & 0o7777, 0o600);
    assert_eq!(r.mode(), Some(0o600));
    let b = dir.path().join("b");
    CreateOptions::new().mode(0o640).create_file(&b, 4096).unwrap();
    assert_eq!(std::fs::metadata(&b).unwrap().permissions().mode() & 0o7777, 0o640);
    // Space is reserved: the file already has its full size in allocated blocks.
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(&a).unwrap();
    assert_eq!(md.len(), 4096);
    assert!(md.blocks() * 512 >= 4096, "blocks not reserved: {}", md.blocks());
}

#[test]
fn shm_objects_are_0600() {
    let name = shm_testkit::unique_name("shm-core-mode");
    let r = Region::create_shm(&name, 4096).unwrap();
    assert_eq!(r.mode(), Some(0o600));
    let again = Region::create_shm(&name, 4096);
    assert!(matches!(again, Err(CreateError::AlreadyExists { .. })), "{again:?}");
    Region::unlink_shm(&name).unwrap();
}

#[test]
fn zero_length_is_refused_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(Region::anonymous(0), Err(MapError::ZeroLength { backing: Backing::Anonymous })));
    let p = dir.path().join("z");
    let e = Region::create_file(&p, 0).unwrap_err();
    assert!(matches!(e, CreateError::ZeroLength { .. }));
    assert!(e.to_string().contains("length is 0"), "{e}");
    assert!(!p.exists(), "a refused create leaves no file");
    std::fs::write(&p, b"").unwrap();
    let e = Region::open_file(&p).unwrap_err();
    assert!(matches!(e, OpenError::TooSmall { need: 1, have: 0, .. }), "{e:?}");
    let e = OpenOptions::new().len(0).open_file(&p).unwrap_err();
    assert!(matches!(e, OpenError::ZeroLength { .. }), "{e:?}");
    assert!(matches!(Region::create_memfd("z", 0), Err(CreateError::ZeroLength { .. })));
}

#[test]
fn missing_file() {
    let p = std::path::Path::new("/nonexistent-dir-for-shm-core/missing");
    let e = Region::open_file(p).unwrap_err();
    assert!(matches!(&e, OpenError::NotFound { backing: Backing::File(f) } if f == p), "{e:?}");
    assert_eq!(e.to_string(), "cannot open file /nonexistent-dir-for-shm-core/missing: not found");
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::NotFound);
    let e = Region::create_file(p, 10).unwrap_err();
    assert!(matches!(e, CreateError::ParentNotFound { .. }), "{e:?}");
}

#[test]
fn file_smaller_than_asked() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("small");
    std::fs::write(&p, vec![0u8; 1000]).unwrap();
    let e = OpenOptions::new().len(4096).open_file(&p).unwrap_err();
    assert!(matches!(e, OpenError::TooSmall { need: 4096, have: 1000, .. }), "{e:?}");
    assert!(e.to_string().contains("it is 1000 bytes, expected at least 4096"), "{e}");
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidData);
    let page = page_size() as u64;
    let e = OpenOptions::new().offset(page).open_file(&p).unwrap_err();
    assert!(matches!(e, OpenError::TooSmall { have: 1000, .. }), "{e:?}");
}

#[test]
fn unaligned_offset() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, vec![0u8; 3 * 4096]).unwrap();
    let e = OpenOptions::new().offset(100).len(10).open_file(&p).unwrap_err();
    assert!(matches!(e, OpenError::UnalignedOffset { offset: 100, .. }), "{e:?}");
    assert!(e.to_string().contains("multiple of the page size"), "{e}");
}

#[test]
fn create_over_an_existing_file_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("exists");
    std::fs::write(&p, b"precious").unwrap();
    let e = Region::create_file(&p, 4096).unwrap_err();
    assert!(matches!(e, CreateError::AlreadyExists { .. }), "{e:?}");
    assert!(e.to_string().contains("already exists"), "{e}");
    assert_eq!(std::fs::read(&p).unwrap(), b"precious", "nothing lost");
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::AlreadyExists);
}

#[test]
fn symlinks_are_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    std::fs::write(&target, vec![0u8; 4096]).unwrap();
    let link = dir.path().join("link");
    symlink(&target, &link).unwrap();
    let e = Region::open_file(&link).unwrap_err();
    assert!(matches!(e, OpenError::Symlink { .. }), "{e:?}");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    // A dangling link where a new file would go: create refuses instead of writing through it.
    let dangling = dir.path().join("dangling");
    symlink(dir.path().join("nowhere"), &dangling).unwrap();
    assert!(matches!(Region::create_file(&dangling, 4096), Err(CreateError::AlreadyExists { .. })));
    assert!(!dir.path().join("nowhere").exists());
}

#[test]
fn directory_is_not_a_region() {
    let dir = tempfile::tempdir().unwrap();
    let e = Region::open_file(dir.path()).unwrap_err();
    assert!(matches!(e, OpenError::NotRegularFile { found: "directory", .. }), "{e:?}");
    let e = OpenOptions::new().read_only().open_file(dir.path()).unwrap_err();
    assert!(matches!(e, OpenError::NotRegularFile { found: "directory", .. }), "{e:?}");
    assert!(e.to_string().contains("expected a regular file"));
}

#[test]
fn permission_denied_names_the_access() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = dir.path().join("private");
    Region::create_file(&p, 4096).unwrap(); // 0600, owned by us
    let check = || {
        let e = Region::open_file(&p).unwrap_err();
        let ok = matches!(e, OpenError::PermissionDenied { writable: true, .. })
            && e.to_string().ends_with("read-write: permission denied")
            && matches!(
                OpenOptions::new().read_only().open_file(&p),
                Err(OpenError::PermissionDenied { writable: false, .. })
            );
        if ok {
            0
        } else {
            1
        }
    };
    if nix::unistd::geteuid().is_root() {
        // root bypasses permission bits: check as user "nobody" in a forked child.
        shm_testkit::fork(|| {
            let nobody = nix::unistd::Uid::from_raw(65534);
            if nix::unistd::setgid(nix::unistd::Gid::from_raw(65534)).is_err()
                || nix::unistd::setuid(nobody).is_err()
            {
                return 2;
            }
            check()
        })
        .join();
    } else {
        assert_eq!(check(), 0);
    }
}

#[test]
fn bad_shm_names() {
    let e = Region::create_shm("/a/b", 4096).unwrap_err();
    assert!(matches!(&e, CreateError::InvalidName(NameError::Slash { position: 2, .. })), "{e:?}");
    let long = "x".repeat(300);
    let e = Region::open_shm(&long).unwrap_err();
    assert!(matches!(&e, OpenError::InvalidName(NameError::TooLong { len: 300, max: 255, .. })), "{e:?}");
    assert!(e.to_string().contains("at most 255"), "{e}");
    assert!(matches!(Region::open_shm("/definitely-not-there-shm-core"), Err(OpenError::NotFound { .. })));
}

#[test]
fn memfd_is_sealed_and_unsealed_fds_are_refused() {
    let r = Region::create_memfd("sealed", 8192).unwrap();
    let fd = r.fd().unwrap();
    assert_eq!(nix::unistd::ftruncate(fd, 0), Err(nix::errno::Errno::EPERM));
    assert_eq!(nix::unistd::ftruncate(fd, 1 << 20), Err(nix::errno::Errno::EPERM));
    // A plain file descriptor has no seals: open_memfd refuses it.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("plain");
    std::fs::write(&p, vec![0u8; 4096]).unwrap();
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&p).unwrap();
    let e = Region::open_memfd(file.into()).unwrap_err();
    assert!(matches!(e, OpenError::MissingSeals { found: 0, .. }), "{e:?}");
    // The same descriptor duplicated maps fine and shares memory.
    let dup = fd.try_clone_to_owned().unwrap();
    let again = Region::open_memfd(dup).unwrap();
    r.write_at(10, b"same pages").unwrap();
    let mut buf = [0u8; 10];
    again.read_at(10, &mut buf).unwrap();
    assert_eq!(&buf, b"same pages");
}

/// A file that cannot get its space is an error at creation (not a SIGBUS on first touch), and
/// nothing is left behind. The limit comes from RLIMIT_FSIZE in a forked child.
#[test]
fn no_space_is_an_error_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("too-big");
    let child = shm_testkit::fork(|| {
        use nix::sys::resource::{setrlimit, Resource};
        use nix::sys::signal::{signal, SigHandler, Signal};
        // SAFETY: ignoring SIGXFSZ installs no handler code; the call only sets a disposition.
        if unsafe { signal(Signal::SIGXFSZ, SigHandler::SigIgn) }.is_err()
            || setrlimit(Resource::RLIMIT_FSIZE, 1 << 20, 1 << 20).is_err()
        {
            return 2;
        }
        match Region::create_file(&path, 4 << 20) {
            Err(CreateError::NoSpace { len, .. }) if len == 4 << 20 && !path.exists() => 0,
            Err(e) => {
                eprintln!("unexpected error: {e}");
                3
            }
            Ok(_) => 4,
        }
    });
    child.join();
}
