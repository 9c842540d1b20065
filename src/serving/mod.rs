//! The servers: one [`app::App`] answers TFTP ([`tftp`]) and HTTP ([`http`]) requests from
//! the live snapshot, each request accounted by a [`request::RequestLog`]; the admin API and
//! status page ([`admin`]) share the web plumbing ([`web`]) with HTTP; the image cache
//! ([`images`]), the request journal, metrics and limits serve them. [`run`] starts it all.

pub mod admin;
pub mod app;
pub mod http;
pub mod images;
pub mod journal;
pub mod limits;
pub mod metrics;
pub mod request;
pub mod roots;
pub mod run;
pub mod tftp;
pub mod web;
