//! Who may use the admin API and page: the bearer token, and — when no token is set — the
//! `Host` check that keeps a web page from reaching the API through DNS rebinding.
//!
//! Without a token, the admin port answers anyone who can connect; on loopback that is meant
//! to be the operator. But a browser on that machine visiting a hostile site can be made to
//! connect too: the site's name is re-pointed (rebound) to 127.0.0.1 and its script then
//! reads the API as same-origin. Such requests carry the hostile *name* in `Host`, so only
//! names this server is known by are accepted: the listen address itself, `localhost` when
//! listening on loopback, any IP literal when listening on a wildcard address (a rebinding
//! attack always uses a name), and `[admin] host_aliases`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// The admin token, as read from `[admin] token_file`.
pub struct Token(String);

/// A token file that cannot protect anything.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("[admin] token_file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "[admin] token_file {} is empty (only white space), which would let anyone in: write a token into it, or remove token_file to run the admin API without one",
        path.display()
    )]
    Empty { path: PathBuf },
}

impl Token {
    /// Reads the token (surrounding white space dropped). An empty file is an error, not
    /// "no token": it would otherwise accept an empty `?token=` from anyone.
    pub fn read(path: &Path) -> Result<Token, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_owned(),
            source,
        })?;
        Token::new(&text).ok_or_else(|| TokenError::Empty {
            path: path.to_owned(),
        })
    }

    /// A token from text; `None` when it is empty after trimming.
    pub fn new(text: &str) -> Option<Token> {
        let t = text.trim();
        (!t.is_empty()).then(|| Token(t.to_owned()))
    }

    /// Compares without an early exit, so a token cannot be guessed byte by byte from
    /// timing.
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (given.as_bytes(), self.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// The host names a token-less admin server answers to.
#[derive(Clone, Debug)]
pub struct HostCheck {
    listen: IpAddr,
    aliases: Vec<String>,
}

impl HostCheck {
    pub fn new(listen: SocketAddr, aliases: &[String]) -> HostCheck {
        HostCheck {
            listen: listen.ip(),
            aliases: aliases.iter().map(|a| a.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether a request's `Host` names this server. The port is not compared: a rebinding
    /// attack is told apart by the name, and a reverse proxy may forward another port.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let Some(name) = host.and_then(host_name) else {
            return false;
        };
        match name.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(ip) => ip == self.listen || self.listen.is_unspecified(),
            Err(_) => {
                (name == "localhost" && self.listen.is_loopback()) || self.aliases.contains(&name)
            }
        }
    }
}

/// The lower-cased host part of a `Host` header (`host`, `host:port`, `[v6]:port`); `None`
/// for anything else (user info, paths, empty).
fn host_name(header: &str) -> Option<String> {
    if header.contains('@') {
        return None;
    }
    let authority: http::uri::Authority = header.parse().ok()?;
    let host = authority.host();
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(listen: &str, aliases: &[&str]) -> HostCheck {
        let aliases: Vec<String> = aliases.iter().map(|a| a.to_string()).collect();
        HostCheck::new(listen.parse().expect("addr"), &aliases)
    }

    #[test]
    fn only_names_of_this_server_pass_the_host_check() {
        let c = check("127.0.0.1:8081", &["Admin.Example"]);
        for ok in [
            "127.0.0.1:8081",
            "127.0.0.1",
            "localhost:8081",
            "admin.example:443",
            "ADMIN.example",
        ] {
            assert!(c.allows(Some(ok)), "{ok}");
        }
        for refused in [
            "evil.example:8081",
            "127.0.0.1.evil.example",
            "127.0.0.2:8081",
            "user@127.0.0.1:8081",
            "127.0.0.1:8081/x",
            "",
        ] {
            assert!(!c.allows(Some(refused)), "{refused:?}");
        }
        assert!(!c.allows(None), "no Host");
        let v6 = check("[::1]:8081", &[]);
        assert!(v6.allows(Some("[::1]:8081")) && v6.allows(Some("localhost")));
        let wildcard = check("0.0.0.0:8081", &[]);
        assert!(wildcard.allows(Some("192.0.2.7:8081")));
        assert!(
            !wildcard.allows(Some("localhost")),
            "not a loopback listener"
        );
        assert!(!wildcard.allows(Some("evil.example")));
    }

    #[test]
    fn empty_tokens_are_refused_and_tokens_compare_exactly() {
        assert!(Token::new("\n").is_none());
        assert!(Token::new(" \t\r\n").is_none());
        let t = Token::new("s3cret\n").expect("token");
        assert!(t.matches("s3cret"));
        assert!(!t.matches(""));
        assert!(!t.matches("s3cre"));
        assert!(!t.matches("s3cret "));
    }
}
