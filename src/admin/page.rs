//! The status page (server-side Tera, autoescaped). Being written.

use http::{Response, StatusCode};

use super::{plain, Admin};
use crate::http::files::Body;

/// Routes the page's paths.
pub fn route(_admin: &Admin, _path: &str, _query: Option<&str>) -> Response<Body> {
    plain(StatusCode::NOT_FOUND, "not found\n")
}
