//! Normalising a requested name into relative components, and nothing else.
//!
//! Clients send names with leading `/`, DOS `\` separators and `tftp://host/` prefixes; all
//! are accepted. Refused: NUL and control bytes and `..` components. Finding the name on disk
//! (symlinks resolved, never outside a root) is `serving::roots`.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
