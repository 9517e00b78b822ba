//! Validated POSIX shared-memory names.

use std::ffi::CString;
use std::fmt;

use crate::error::NameError;

/// The longest name accepted after the leading `/` (`NAME_MAX`).
pub const SHM_NAME_MAX: usize = 255;

/// A valid POSIX shared-memory name: exactly one leading `/`, then 1 to [`SHM_NAME_MAX`] bytes
/// with no `/` and no NUL, and not `.` or `..`.
///
/// ```
/// use shm_core::ShmName;
/// assert_eq!(ShmName::new("ring").unwrap().as_str(), "/ring");
/// assert_eq!(ShmName::new("/ring").unwrap().as_str(), "/ring");
/// assert!(ShmName::new("/a/b").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ShmName {
    name: String,
    c: CString,
}

impl ShmName {
    /// Validate `name`, adding the leading `/` when it is missing.
    pub fn new(name: &str) -> Result<ShmName, NameError> {
        let body = name.strip_prefix('/').unwrap_or(name);
        let offset = name.len() - body.len();
        if body.is_empty() {
            return Err(NameError::Empty { name: name.to_owned(), max: SHM_NAME_MAX });
        }
        if let Some(pos) = body.find('/') {
            return Err(NameError::Slash { name: name.to_owned(), position: pos + offset });
        }
        if body.len() > SHM_NAME_MAX {
            return Err(NameError::TooLong { name: name.to_owned(), len: body.len(), max: SHM_NAME_MAX });
        }
        if body == "." || body == ".." || body.contains('\0') {
            return Err(NameError::Invalid { name: name.to_owned() });
        }
        let full = format!("/{body}");
        let c = CString::new(full.clone()).map_err(|_| NameError::Invalid { name: name.to_owned() })?;
        Ok(ShmName { name: full, c })
    }

    /// The name with its leading `/`.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// Where Linux shows the object (`/dev/shm/NAME`).
    pub fn dev_shm_path(&self) -> std::path::PathBuf {
        std::path::Path::new("/dev/shm").join(&self.name[1..])
    }

    pub(crate) fn as_c_str(&self) -> &std::ffi::CStr {
        &self.c
    }
}

impl fmt::Display for ShmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Debug for ShmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShmName({:?})", self.name)
    }
}

impl std::str::FromStr for ShmName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ShmName::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(ShmName::new("x").unwrap().as_str(), "/x");
        assert_eq!(ShmName::new("/x").unwrap().as_str(), "/x");
        assert_eq!(ShmName::new("/a/b"), Err(NameError::Slash { name: "/a/b".into(), position: 2 }));
        assert_eq!(ShmName::new("a/b"), Err(NameError::Slash { name: "a/b".into(), position: 1 }));
        assert_eq!(ShmName::new("//a"), Err(NameError::Slash { name: "//a".into(), position: 1 }));
        assert!(matches!(ShmName::new("/"), Err(NameError::Empty { .. })));
        assert!(matches!(ShmName::new(""), Err(NameError::Empty { .. })));
        assert!(matches!(ShmName::new(".."), Err(NameError::Invalid { .. })));
        assert!(matches!(ShmName::new("a\0b"), Err(NameError::Invalid { .. })));
        let long = "n".repeat(256);
        assert_eq!(ShmName::new(&long), Err(NameError::TooLong { name: long.clone(), len: 256, max: 255 }));
        assert!(ShmName::new(&long[..255]).is_ok());
        let msg = ShmName::new("/a/b").unwrap_err().to_string();
        assert!(msg.contains("\"/a/b\"") && msg.contains("byte 2"), "{msg}");
    }
}
