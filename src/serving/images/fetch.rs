//! HTTP(S) requests for the image cache, held to the [`UrlPolicy`] at every step.
//!
//! Checking a URL's text is not enough: a listed name may resolve to 169.254.169.254, and an
//! allowed server may redirect anywhere. So each request resolves the host itself, checks
//! every address, and hands reqwest only the addresses that passed (its own resolver is
//! never asked); redirects are not followed by reqwest but here, each target checked like
//! the first URL. Environment proxies are not used: through a proxy the address connected
//! to would be the proxy's, and the check would prove nothing.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, Response, StatusCode, Url};

use super::error::ImageError;
use super::policy::{Refusal, UrlPolicy};

/// Redirects followed before giving up (reqwest's default limit).
const MAX_REDIRECTS: usize = 10;

/// Makes policy-checked requests.
pub struct Fetcher {
    policy: UrlPolicy,
    connect_timeout: Duration,
    read_timeout: Duration,
}

impl Fetcher {
    pub fn new(policy: UrlPolicy, connect_timeout: Duration, read_timeout: Duration) -> Fetcher {
        Fetcher {
            policy,
            connect_timeout,
            read_timeout,
        }
    }

    pub fn policy(&self) -> &UrlPolicy {
        &self.policy
    }

    /// Sends `method` to `url`, following redirects; a response other than 2xx is an error.
    pub async fn send(&self, method: Method, url: &str) -> Result<Response, ImageError> {
        let mut url = self.policy.check_url(url)?;
        for _ in 0..=MAX_REDIRECTS {
            let client = self.client_for(&url).await?;
            let resp = client
                .request(method.clone(), url.clone())
                .send()
                .await
                .map_err(|e| request_error(&method, &url, e))?;
            let status = resp.status();
            if !is_redirect(status) {
                return resp
                    .error_for_status()
                    .map_err(|e| request_error(&method, &url, e));
            }
            let next = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .ok_or_else(|| ImageError::NoLocation {
                    request: format!("{method} {url}"),
                    status: status.to_string(),
                })?;
            url = self
                .policy
                .check_url(next.as_str())
                .map_err(|r| Refusal::Redirect {
                    from: url.to_string(),
                    to: Box::new(r),
                })?;
        }
        Err(ImageError::TooManyRedirects {
            request: format!("{method} {url}"),
            max: MAX_REDIRECTS,
        })
    }

    /// A client that connects to `url`'s host only at addresses the policy allows.
    async fn client_for(&self, url: &Url) -> Result<reqwest::Client, ImageError> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        let literal = url
            .host_str()
            .is_some_and(|h| h.starts_with('[') || h.parse::<std::net::IpAddr>().is_ok());
        if let (false, Some(host)) = (literal, url.host_str()) {
            let addrs = self.resolve(url, host).await?;
            b = b.resolve_to_addrs(host, &addrs);
        }
        b.build().map_err(|e| ImageError::Client(e.to_string()))
    }

    /// Resolves the host and keeps the addresses the policy allows; none: the first refusal.
    async fn resolve(&self, url: &Url, host: &str) -> Result<Vec<SocketAddr>, ImageError> {
        let port = url.port_or_known_default().unwrap_or(80);
        let found =
            tokio::time::timeout(self.connect_timeout, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| ImageError::ResolveTimeout {
                    url: url.to_string(),
                    host: host.to_owned(),
                })?
                .map_err(|e| ImageError::Resolve {
                    url: url.to_string(),
                    host: host.to_owned(),
                    error: e.to_string(),
                })?;
        let mut allowed = Vec::new();
        let mut refused = None;
        for a in found {
            match self.policy.check_resolved(url, a) {
                Ok(()) => allowed.push(a),
                Err(r) => {
                    tracing::warn!(%url, addr = %a, "image host address refused");
                    refused.get_or_insert(r);
                }
            }
        }
        match (allowed.is_empty(), refused) {
            (false, _) => Ok(allowed),
            (true, Some(r)) => Err(r.into()),
            (true, None) => Err(ImageError::NoAddress {
                url: url.to_string(),
                host: host.to_owned(),
            }),
        }
    }
}

fn request_error(method: &Method, url: &Url, e: reqwest::Error) -> ImageError {
    ImageError::Request {
        request: format!("{method} {url}"),
        error: e.to_string(),
    }
}

fn is_redirect(s: StatusCode) -> bool {
    matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308)
}
