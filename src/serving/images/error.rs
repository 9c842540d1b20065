//! Why an image is not served. Every message names the image or URL and, where the
//! operator can do something about it, what: the log line and the node's problem are all
//! they see of a failed fetch.

use super::policy::Refusal;

/// Why an image could not be read, fetched or stored. Shared with every request waiting for
/// the fetch, hence `Clone` (causes are kept as text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The policy refuses the reference, an address it resolves to, or a redirect target.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The request failed (connection, TLS, timeout) or the server answered with an error.
    #[error("{request}: {error}")]
    Request { request: String, error: String },
    #[error(
        "{request}: {status} without a usable Location (the image server's redirect is broken)"
    )]
    NoLocation { request: String, status: String },
    #[error("{request}: more than {max} redirects (a redirect loop on the image server?)")]
    TooManyRedirects { request: String, max: usize },
    #[error("{url}: resolving {host} timed out (check this host's DNS resolver)")]
    ResolveTimeout { url: String, host: String },
    #[error("{url}: resolving {host}: {error}")]
    Resolve {
        url: String,
        host: String,
        error: String,
    },
    #[error("{url}: {host} has no address (check the name in the node's image URL)")]
    NoAddress { url: String, host: String },
    #[error("building an HTTP client: {0}")]
    Client(String),
    /// Bigger than the whole cache: it could never be kept.
    #[error("GET {url}: larger than the image cache ({cap} bytes); raise image_cache_mib")]
    TooLarge { url: String, cap: u64 },
    /// Fewer bytes than the server's `Content-Length`: nothing is kept.
    #[error("GET {url}: got {got} of {announced} bytes (the image server cut the transfer short)")]
    Truncated {
        url: String,
        got: u64,
        announced: u64,
    },
    /// Writing the copy into the cache directory failed (a full disk, permissions).
    #[error("{path}: {error} (check the free space and permissions of image_cache_dir)")]
    Store { path: String, error: String },
    #[error("{path} is not a regular file (point the node at the image file itself)")]
    NotAFile { path: String },
    #[error("{path}: {error}")]
    Unreadable { path: String, error: String },
    /// The fetch's task ended without a result (the server is shutting down).
    #[error("image fetch was abandoned")]
    Abandoned,
}

impl ImageError {
    /// A failed write under the cache directory.
    pub fn store(path: &std::path::Path, error: impl std::fmt::Display) -> ImageError {
        ImageError::Store {
            path: path.display().to_string(),
            error: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_image_and_what_to_fix() {
        let big = ImageError::TooLarge {
            url: "http://img/k".into(),
            cap: 1 << 20,
        };
        assert_eq!(
            big.to_string(),
            "GET http://img/k: larger than the image cache (1048576 bytes); raise image_cache_mib"
        );
        let dir = ImageError::NotAFile {
            path: "/var/lib/ironic/k".into(),
        };
        assert!(dir
            .to_string()
            .starts_with("/var/lib/ironic/k is not a regular file"));
        let full = ImageError::store(std::path::Path::new("/c/.k.tmp"), "No space left on device");
        assert!(full.to_string().contains("No space left on device"));
        assert!(full.to_string().contains("image_cache_dir"));
    }
}
