//! The served roots on disk: a normalised request name ([`normalize`]) becomes a file only
//! if its canonical path — symlinks resolved — stays inside the root it was found in.
//!
//! [`normalize`]: crate::model::paths::normalize

use std::path::{Component, Path, PathBuf};

use crate::model::paths::PathError;

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
