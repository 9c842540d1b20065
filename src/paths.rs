//! Turning a requested name into a file inside the served roots, and nothing else.
//!
//! Clients send names with leading `/`, DOS `\` separators and `tftp://host/` prefixes; all
//! are accepted. Refused: NUL and control bytes, `..` components, and any path — symlinks
//! included — that resolves outside its root. The check is done on the canonical path, so
//! a symlink inside a root pointing elsewhere is refused, not followed.

use std::path::{Component, Path, PathBuf};

/// Why a request path was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum PathError {
    #[error("empty path")]
    Empty,
    #[error("control character in path")]
    Control,
    #[error("`..` in path")]
    Traversal,
    #[error("path too long")]
    TooLong,
    #[error("resolves outside the served roots")]
    Escapes,
    #[error("not found")]
    NotFound,
}

/// Longest accepted request path; TFTP caps names at ~500 bytes anyway.
const MAX_LEN: usize = 1024;

/// Normalises a client's name into relative `/`-separated components, refusing traversal.
pub fn normalize(requested: &str) -> Result<String, PathError> {
    if requested.len() > MAX_LEN {
        return Err(PathError::TooLong);
    }
    if requested.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(PathError::Control);
    }
    let mut s = requested.replace('\\', "/");
    if let Some(rest) = s.strip_prefix("tftp://") {
        // tftp://host[:port]/path — the host part names us, drop it.
        s = rest
            .split_once('/')
            .map(|(_, p)| p.to_owned())
            .unwrap_or_default();
    }
    let mut parts = Vec::new();
    for part in s.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(PathError::Traversal),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(PathError::Empty);
    }
    Ok(parts.join("/"))
}

/// The served roots, canonicalised once at start-up (a root that does not exist is skipped
/// with a warning: an optional extra root must not stop the server).
#[derive(Clone, Debug, Default)]
pub struct Roots {
    roots: Vec<PathBuf>,
}

impl Roots {
    pub fn new<I, P>(roots: I) -> Roots
    where
        I: IntoIterator<Item = P>,
        P: AsRef<Path>,
    {
        let roots = roots
            .into_iter()
            .filter_map(|r| match r.as_ref().canonicalize() {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(root = %r.as_ref().display(), error = %e, "served root skipped");
                    None
                }
            })
            .collect();
        Roots { roots }
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.roots
    }

    /// The first root holding `relative` as a regular file whose canonical path stays inside
    /// that root.
    pub fn resolve(&self, relative: &str) -> Result<PathBuf, PathError> {
        let rel = Path::new(relative);
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(PathError::Traversal);
        }
        let mut escaped = false;
        for root in &self.roots {
            let Ok(real) = root.join(rel).canonicalize() else {
                continue;
            };
            if !real.starts_with(root) {
                escaped = true;
                continue;
            }
            if real.is_file() {
                return Ok(real);
            }
        }
        Err(if escaped {
            PathError::Escapes
        } else {
            PathError::NotFound
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn client_spellings_normalise() {
        for (input, want) in [
            ("pxelinux.0", "pxelinux.0"),
            ("/pxelinux.0", "pxelinux.0"),
            ("\\boot\\pxelinux.0", "boot/pxelinux.0"),
            ("tftp://192.0.2.1/boot/x.efi", "boot/x.efi"),
            ("./a//b/./c", "a/b/c"),
        ] {
            assert_eq!(normalize(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn traversal_and_control_bytes_are_refused() {
        for bad in [
            "../etc/passwd",
            "a/../../b",
            "..\\x",
            "tftp://h/../x",
            "/..",
        ] {
            assert_eq!(normalize(bad), Err(PathError::Traversal), "{bad}");
        }
        assert_eq!(normalize("a\0b"), Err(PathError::Control));
        assert_eq!(normalize("a\nb"), Err(PathError::Control));
        assert_eq!(normalize("/"), Err(PathError::Empty));
        assert_eq!(normalize(&"a".repeat(2000)), Err(PathError::TooLong));
    }

    #[test]
    fn symlinks_out_of_a_root_are_refused_and_roots_are_tried_in_order() {
        let t = tempfile::tempdir().expect("tempdir");
        let (a, b, outside) = (
            t.path().join("a"),
            t.path().join("b"),
            t.path().join("secret"),
        );
        for d in [&a, &b] {
            fs::create_dir(d).expect("mkdir");
        }
        fs::write(&outside, "secret").expect("write");
        fs::write(a.join("one"), "a").expect("write");
        fs::write(b.join("one"), "b").expect("write");
        fs::write(b.join("two"), "b").expect("write");
        std::os::unix::fs::symlink(&outside, a.join("leak")).expect("symlink");
        std::os::unix::fs::symlink(b.join("two"), a.join("inside-other-root")).expect("symlink");
        fs::create_dir(a.join("dir")).expect("mkdir");
        let roots = Roots::new([&a, &b, &t.path().join("missing")]);
        assert_eq!(roots.dirs().len(), 2);
        assert_eq!(
            roots.resolve("one").map(|p| fs::read_to_string(p).ok()),
            Ok(Some("a".into()))
        );
        assert_eq!(
            roots.resolve("two").map(|p| fs::read_to_string(p).ok()),
            Ok(Some("b".into()))
        );
        assert_eq!(roots.resolve("leak"), Err(PathError::Escapes));
        assert_eq!(roots.resolve("inside-other-root"), Err(PathError::Escapes));
        assert_eq!(roots.resolve("dir"), Err(PathError::NotFound));
        assert_eq!(roots.resolve("nope"), Err(PathError::NotFound));
        assert_eq!(roots.resolve("/etc/passwd"), Err(PathError::Traversal));
    }
}
