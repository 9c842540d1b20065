//! Serving one static file (or an in-memory blob) over HTTP, the way a good static server does.
//!
//! Boot artefacts are large (kernels, ramdisks, disk images of hundreds of MB) and many nodes
//! fetch them at once, so a file is never read into memory: it is streamed in fixed-size chunks.
//! Conditional requests (`If-Modified-Since`) and single byte ranges (`Range`, `If-Range`) are
//! honoured because iPXE, curl and image downloaders use them to resume interrupted transfers.
//!
//! Every header decision is made by small pure functions (`parse_range` and friends) so they
//! can be tested without touching the filesystem; only [`serve_file`] does I/O.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::http::header::{
    ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    IF_RANGE, LAST_MODIFIED, RANGE,
};
use ::http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use bytes::Bytes;
use futures_lite::Stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, SeekFrom, Take};
use tokio_util::io::ReaderStream;

use crate::serving::web::{empty, full, method_not_allowed, text, Body};

/// Size of the one read buffer a streamed response owns.
///
/// 64 KiB keeps syscalls and blocking-pool hops rare while bounding per-response memory, which
/// matters when hundreds of nodes pull a ramdisk at the same time.
const CHUNK: usize = 64 * 1024;

/// Content type for anything we have no better name for; boot loaders do not care.
const OCTET_STREAM: &str = "application/octet-stream";

/// Content type for the human-readable configs we serve (iPXE scripts, GRUB/PXELINUX configs).
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// Serves `path` for a GET or HEAD request with the given request `headers`.
///
/// The caller has already resolved `path` and checked that it is a regular file inside the
/// served roots; this function only turns it into a response. Size and mtime are taken from the
/// *opened* handle, so a file swapped between check and open is still served consistently.
///
/// Memory per response is bounded by one `CHUNK` (64 KiB) read buffer in the stream plus the
/// same bound on `tokio::fs::File`'s internal buffer, whatever the file size. HEAD opens the
/// file (so its status matches what GET would return) but never reads it.
pub async fn serve_file(path: &Path, method: &Method, headers: &HeaderMap) -> Response<Body> {
    if !is_get_or_head(method) {
        return method_not_allowed();
    }
    let file = match File::open(path).await {
        Ok(file) => file,
        Err(err) => return io_error_response(path, &err),
    };
    let metadata = match file.metadata().await {
        Ok(metadata) => metadata,
        Err(err) => return io_error_response(path, &err),
    };
    if !metadata.is_file() {
        // The caller promised a regular file; a directory here means the tree changed under us.
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    let meta = Meta {
        len: metadata.len(),
        modified: metadata.modified().ok().and_then(http_time),
        content_type: content_type_for(path),
    };
    let span = match decide(headers, &meta) {
        Plan::Send(span) => span,
        other => return bodiless_response(&meta, &other),
    };
    let body = if method == Method::HEAD {
        empty()
    } else {
        match file_body(file, span).await {
            Ok(body) => body,
            Err(err) => return io_error_response(path, &err),
        }
    };
    content_response(&meta, span, body)
}

/// Serves bytes already in memory (rendered configs, cached small files) with the same
/// conditional and range semantics as [`serve_file`].
///
/// Ranges are zero-copy slices of `data`.
pub fn serve_bytes(
    data: Bytes,
    modified: Option<SystemTime>,
    content_type: &'static str,
    method: &Method,
    headers: &HeaderMap,
) -> Response<Body> {
    if !is_get_or_head(method) {
        return method_not_allowed();
    }
    let meta = Meta {
        len: data.len() as u64,
        modified: modified.and_then(http_time),
        content_type,
    };
    let span = match decide(headers, &meta) {
        Plan::Send(span) => span,
        other => return bodiless_response(&meta, &other),
    };
    let body = if method == Method::HEAD {
        empty()
    } else {
        full(slice_span(&data, span))
    };
    content_response(&meta, span, body)
}

/// Called once with the body bytes a response really handed to its connection.
pub type OnSent = Box<dyn FnOnce(u64) + Send + Sync>;

/// Wraps a response's body so that `on_sent` learns how many body bytes went to the
/// connection: all of them as soon as the last is taken, else what was taken when the body is
/// dropped — a HEAD (no body, whatever `Content-Length` says), a client that closed mid-way.
/// Journal and metrics then count bytes sent, not bytes promised.
pub fn counted(response: Response<Body>, on_sent: OnSent) -> Response<Body> {
    let expected = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    response.map(|inner| {
        BodyExt::boxed(Counted {
            inner,
            sent: 0,
            expected,
            on_sent: Some(on_sent),
        })
    })
}

/// See [`counted`].
struct Counted {
    inner: Body,
    sent: u64,
    /// `Content-Length`: reaching it ends the count without waiting for the drop.
    expected: Option<u64>,
    on_sent: Option<OnSent>,
}

impl Counted {
    fn report(&mut self) {
        if let Some(f) = self.on_sent.take() {
            f(self.sent);
        }
    }
}

impl hyper::body::Body for Counted {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                self.sent += frame.data_ref().map_or(0, |d| d.len() as u64);
                if self.expected == Some(self.sent) {
                    self.report();
                }
            }
            Poll::Ready(None) => self.report(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.report();
    }
}

/// What the response describes: enough to write every header without touching the content.
#[derive(Debug, Clone, Copy)]
struct Meta {
    /// Total length of the representation in bytes.
    len: u64,
    /// Last modification time, truncated to whole seconds (HTTP dates have no finer resolution).
    /// `None` when unknown or not representable as an HTTP date.
    modified: Option<SystemTime>,
    content_type: &'static str,
}

/// The part of the representation a 200/206 response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u64,
    /// Number of bytes; at least 1 when `partial`.
    count: u64,
    /// Whether this is a 206 answer to a range request.
    partial: bool,
}

/// The outcome of evaluating the request's conditional and range headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// 304: the client's copy is current.
    NotModified,
    /// 416: the requested range lies wholly outside the representation.
    Unsatisfiable,
    /// 200 or 206 with this span.
    Send(Span),
}

/// The verdict on a `Range` header value for a representation of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeDecision {
    /// Malformed, multi-range or otherwise unsupported: send the whole representation
    /// (RFC 9110 §14.2 lets a server ignore any Range header).
    Ignore,
    /// Send bytes `start..=end`; always `start <= end < len`.
    Satisfiable { start: u64, end: u64 },
    /// Send 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Only GET and HEAD make sense for static content; anything else gets 405.
fn is_get_or_head(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// Evaluates preconditions then ranges, in the order RFC 9110 §13.2.2 prescribes:
/// `If-Modified-Since` first (so a 304 beats a 416), then `Range` gated by `If-Range`.
fn decide(headers: &HeaderMap, meta: &Meta) -> Plan {
    if not_modified(headers, meta.modified) {
        return Plan::NotModified;
    }
    let whole = Span {
        start: 0,
        count: meta.len,
        partial: false,
    };
    match range_decision(headers, meta) {
        RangeDecision::Ignore => Plan::Send(whole),
        RangeDecision::Unsatisfiable => Plan::Unsatisfiable,
        RangeDecision::Satisfiable { start, end } => Plan::Send(Span {
            start,
            count: end - start + 1,
            partial: true,
        }),
    }
}

/// True when `If-Modified-Since` says the client already has this version.
///
/// Per RFC 9110 §13.1.3 the header is ignored when `If-None-Match` is present (we emit no
/// ETags, so that request cannot be answered with 304 from dates alone), when it is not a single
/// valid HTTP date, or when we do not know the modification time.
fn not_modified(headers: &HeaderMap, modified: Option<SystemTime>) -> bool {
    if headers.contains_key(IF_NONE_MATCH) {
        return false;
    }
    match (modified, single_date(headers, &IF_MODIFIED_SINCE)) {
        (Some(modified), Some(since)) => modified <= since,
        _ => false,
    }
}

/// Reads the `Range` header and decides what to send, honouring `If-Range`.
fn range_decision(headers: &HeaderMap, meta: &Meta) -> RangeDecision {
    let Some(value) = single_str(headers, &RANGE) else {
        return RangeDecision::Ignore;
    };
    if !if_range_matches(headers, meta.modified) {
        return RangeDecision::Ignore;
    }
    parse_range(value, meta.len)
}

/// `If-Range` lets a resuming client say "only give me the range if the file is still the one
/// I started with"; otherwise it wants the whole new file.
///
/// We only emit dates, never ETags, so an entity-tag or unparsable value never matches, and a
/// date matches only if it equals our `Last-Modified` exactly (RFC 9110 §13.1.5).
fn if_range_matches(headers: &HeaderMap, modified: Option<SystemTime>) -> bool {
    if !headers.contains_key(IF_RANGE) {
        return true;
    }
    match (modified, single_date(headers, &IF_RANGE)) {
        (Some(modified), Some(date)) => modified == date,
        _ => false,
    }
}

/// The value of a header that must appear exactly once as visible ASCII, else `None`.
fn single_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => value.to_str().ok(),
        _ => None,
    }
}

/// A header holding exactly one valid HTTP date.
fn single_date(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    httpdate::parse_http_date(single_str(headers, name)?.trim()).ok()
}

/// Parses a `Range` header value (`bytes=a-b`, `bytes=a-`, `bytes=-n`) against a length.
///
/// Pure so it can be tested exhaustively. Deliberately lenient in what it ignores and strict in
/// what it honours: the unit is matched case-insensitively and whitespace around tokens is
/// tolerated, but anything we do not fully understand (other units, multiple ranges, `a > b`,
/// non-digits) yields [`RangeDecision::Ignore`], which is always a correct answer.
/// Positions too large for `u64` saturate: a huge last-pos just means "to the end", a huge
/// first-pos is past the end, a huge suffix means the whole file.
pub(crate) fn parse_range(header: &str, len: u64) -> RangeDecision {
    let Some(set) = strip_bytes_unit(header) else {
        return RangeDecision::Ignore;
    };
    if set.contains(',') {
        // Multipart/byteranges is not worth its complexity for boot files.
        return RangeDecision::Ignore;
    }
    let Some((first, last)) = set.split_once('-') else {
        return RangeDecision::Ignore;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        suffix_range(last, len)
    } else {
        int_range(first, last, len)
    }
}

/// Strips the `bytes=` unit, returning the range set, or `None` for any other unit.
fn strip_bytes_unit(header: &str) -> Option<&str> {
    let (unit, set) = header.split_once('=')?;
    if unit.trim().eq_ignore_ascii_case("bytes") {
        Some(set.trim())
    } else {
        None
    }
}

/// `bytes=-n`: the last `n` bytes (the whole file if it is shorter than `n`).
fn suffix_range(last: &str, len: u64) -> RangeDecision {
    let Some(n) = parse_pos(last) else {
        return RangeDecision::Ignore;
    };
    if n == 0 || len == 0 {
        // No byte can be selected: RFC 9110 §14.1.2 calls a zero suffix unsatisfiable, and an
        // empty file has no "last n bytes" to send.
        return RangeDecision::Unsatisfiable;
    }
    RangeDecision::Satisfiable {
        start: len - n.min(len),
        end: len - 1,
    }
}

/// `bytes=a-b` or `bytes=a-`: from `a` to `b` (clamped to the end) or to the end.
fn int_range(first: &str, last: &str, len: u64) -> RangeDecision {
    let Some(start) = parse_pos(first) else {
        return RangeDecision::Ignore;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match parse_pos(last) {
            Some(end) if end >= start => end,
            // Non-digits, or `a > b` which RFC 9110 §14.1.1 calls invalid.
            _ => return RangeDecision::Ignore,
        }
    };
    if start >= len {
        return RangeDecision::Unsatisfiable;
    }
    RangeDecision::Satisfiable {
        start,
        end: end.min(len - 1),
    }
}

/// A non-empty run of ASCII digits as `u64`, saturating at `u64::MAX` instead of failing, so
/// absurdly large positions are judged by meaning rather than rejected.
fn parse_pos(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Only overflow can fail once the input is known to be digits.
    Some(digits.parse().unwrap_or(u64::MAX))
}

/// Converts an mtime to what HTTP can express: whole seconds between 1970 and 9999.
///
/// `httpdate` panics outside that window, and files with odd mtimes (`touch -d 1960`,
/// broken clocks) must not crash the server, so they are treated as "unknown".
fn http_time(time: SystemTime) -> Option<SystemTime> {
    /// 9999-12-31T23:59:59Z, the last instant an IMF-fixdate can express.
    const MAX_SECS: u64 = 253_402_300_799;
    let secs = time.duration_since(UNIX_EPOCH).ok()?.as_secs();
    (secs <= MAX_SECS).then(|| UNIX_EPOCH + Duration::from_secs(secs))
}

/// Content type by extension: text for configs and scripts so browsers and `curl` show them,
/// octet-stream for everything else (kernels, ramdisks, EFI binaries, images).
fn content_type_for(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|ext| ext.to_str()).unwrap_or("");
    const TEXT_EXTENSIONS: [&str; 6] = ["ipxe", "cfg", "conf", "txt", "cnf", "sh"];
    if TEXT_EXTENSIONS.iter().any(|t| ext.eq_ignore_ascii_case(t)) {
        TEXT_PLAIN
    } else {
        OCTET_STREAM
    }
}

/// Opens the streamed body for `span` of an already-open file.
async fn file_body(mut file: File, span: Span) -> io::Result<Body> {
    // Cap tokio's internal blocking-read buffer too, so CHUNK really bounds memory.
    file.set_max_buf_size(CHUNK);
    if span.start > 0 {
        file.seek(SeekFrom::Start(span.start)).await?;
    }
    let reader = ReaderStream::with_capacity(file.take(span.count), CHUNK);
    let stream = ExactLen {
        inner: reader,
        remaining: span.count,
    };
    Ok(BodyExt::boxed(StreamBody::new(stream)))
}

/// The bytes of `span` from an in-memory buffer, without copying.
fn slice_span(data: &Bytes, span: Span) -> Bytes {
    // Spans are derived from `data.len()`, so these conversions and bounds cannot fail; the
    // fallbacks only keep this function panic-free.
    let start = usize::try_from(span.start)
        .unwrap_or(usize::MAX)
        .min(data.len());
    let count = usize::try_from(span.count).unwrap_or(usize::MAX);
    let end = start.saturating_add(count).min(data.len());
    data.slice(start..end)
}

/// Yields exactly `remaining` bytes of frames or fails.
///
/// `take` stops early at end of file, so if the file shrinks while being streamed the inner
/// stream would end cleanly after fewer bytes than the `Content-Length` we promised. Turning
/// that into an error makes hyper abort the connection, so the client sees a failed transfer
/// instead of a silently truncated kernel.
struct ExactLen {
    inner: ReaderStream<Take<File>>,
    remaining: u64,
}

impl Stream for ExactLen {
    type Item = io::Result<Frame<Bytes>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err))),
            Poll::Ready(None) if self.remaining > 0 => {
                let missing = std::mem::take(&mut self.remaining);
                Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("file shrank while streaming: {missing} bytes missing"),
                ))))
            }
            Poll::Ready(None) => Poll::Ready(None),
        }
    }
}

/// Builds a 200 or 206 response carrying `span` of the representation.
fn content_response(meta: &Meta, span: Span, body: Body) -> Response<Body> {
    let status = if span.partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut response = response(status, body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(meta.content_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(span.count));
    if span.partial {
        let last = span.start + span.count - 1;
        let range = format!("bytes {}-{}/{}", span.start, last, meta.len);
        insert_formatted(headers, CONTENT_RANGE, &range);
    }
    validator_headers(headers, meta);
    response
}

/// Builds the 304 or 416 responses, which never carry content.
fn bodiless_response(meta: &Meta, plan: &Plan) -> Response<Body> {
    match plan {
        Plan::NotModified => {
            let mut response = response(StatusCode::NOT_MODIFIED, empty());
            validator_headers(response.headers_mut(), meta);
            response
        }
        Plan::Unsatisfiable | Plan::Send(_) => {
            let mut response = response(StatusCode::RANGE_NOT_SATISFIABLE, empty());
            let headers = response.headers_mut();
            headers.insert(CONTENT_LENGTH, HeaderValue::from(0u64));
            insert_formatted(headers, CONTENT_RANGE, &format!("bytes */{}", meta.len));
            headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            response
        }
    }
}

/// `Accept-Ranges` and `Last-Modified`, which every content or 304 response repeats.
fn validator_headers(headers: &mut HeaderMap, meta: &Meta) {
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(modified) = meta.modified {
        // `http_time` guarantees the range httpdate accepts.
        insert_formatted(headers, LAST_MODIFIED, &httpdate::fmt_http_date(modified));
    }
}

/// Inserts a header we formatted ourselves; such values are always valid, so the impossible
/// failure just drops the header rather than panicking.
fn insert_formatted(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// A response with a status and body and no headers yet.
fn response(status: StatusCode, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

/// Maps an open/stat/seek failure to a status; details go to the log, not the client.
fn io_error_response(path: &Path, err: &io::Error) -> Response<Body> {
    match err.kind() {
        io::ErrorKind::NotFound => text(StatusCode::NOT_FOUND, "not found\n"),
        io::ErrorKind::PermissionDenied => {
            tracing::warn!(path = %path.display(), "permission denied serving file");
            text(StatusCode::FORBIDDEN, "forbidden\n")
        }
        _ => {
            tracing::error!(path = %path.display(), error = %err, "failed to serve file");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::http::header::ALLOW;
    use std::io::Write;

    const MIB: usize = 1024 * 1024;

    /// Bytes that differ at every offset within a 251-byte period (a prime), so an off-by-one
    /// in any range shows up as a content mismatch.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// A tempdir holding `name` with `data`, and the file's path.
    fn temp_file(name: &str, data: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(name);
        let mut file = std::fs::File::create(&path).expect("create");
        file.write_all(data).expect("write");
        (dir, path)
    }

    fn headers(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).expect("value"));
        }
        map
    }

    async fn body_bytes(response: Response<Body>) -> Bytes {
        response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
    }

    fn header(response: &Response<Body>, name: HeaderName) -> Option<&str> {
        response.headers().get(name).and_then(|v| v.to_str().ok())
    }

    fn mtime(path: &Path) -> SystemTime {
        std::fs::metadata(path)
            .expect("metadata")
            .modified()
            .expect("mtime")
    }

    async fn get(path: &Path, pairs: &[(HeaderName, &str)]) -> Response<Body> {
        serve_file(path, &Method::GET, &headers(pairs)).await
    }

    // ---- serve_file ----

    #[tokio::test]
    async fn full_get_streams_whole_file_with_headers() {
        let data = pattern(MIB);
        let (_dir, path) = temp_file("kernel", &data);
        let response = get(&path, &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, CONTENT_LENGTH), Some("1048576"));
        assert_eq!(header(&response, ACCEPT_RANGES), Some("bytes"));
        assert_eq!(header(&response, CONTENT_TYPE), Some(OCTET_STREAM));
        assert_eq!(header(&response, CONTENT_RANGE), None);
        let expected_date = httpdate::fmt_http_date(mtime(&path));
        assert_eq!(
            header(&response, LAST_MODIFIED),
            Some(expected_date.as_str())
        );
        assert_eq!(body_bytes(response).await.as_ref(), data.as_slice());
    }

    #[tokio::test]
    async fn text_extension_gets_text_content_type() {
        let (_dir, path) = temp_file("boot.IPXE", b"#!ipxe\n");
        let response = get(&path, &[]).await;
        assert_eq!(header(&response, CONTENT_TYPE), Some(TEXT_PLAIN));
        assert_eq!(body_bytes(response).await.as_ref(), b"#!ipxe\n");
    }

    #[tokio::test]
    async fn head_has_headers_but_no_body() {
        let (_dir, path) = temp_file("ramdisk", &pattern(MIB));
        let response = serve_file(&path, &Method::HEAD, &HeaderMap::new()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, CONTENT_LENGTH), Some("1048576"));
        assert!(header(&response, LAST_MODIFIED).is_some());
        assert!(body_bytes(response).await.is_empty());
    }

    #[tokio::test]
    async fn head_with_range_reports_partial_length() {
        let (_dir, path) = temp_file("ramdisk", &pattern(MIB));
        let map = headers(&[(RANGE, "bytes=10-19")]);
        let response = serve_file(&path, &Method::HEAD, &map).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(header(&response, CONTENT_LENGTH), Some("10"));
        assert_eq!(
            header(&response, CONTENT_RANGE),
            Some("bytes 10-19/1048576")
        );
        assert!(body_bytes(response).await.is_empty());
    }

    /// Asserts a 206 with the given Content-Range covering `data[start..=end]`.
    async fn assert_partial(range: &str, start: usize, end: usize) {
        let data = pattern(MIB);
        let (_dir, path) = temp_file("image", &data);
        let response = get(&path, &[(RANGE, range)]).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        let content_range = format!("bytes {start}-{end}/{}", data.len());
        assert_eq!(
            header(&response, CONTENT_RANGE),
            Some(content_range.as_str())
        );
        let length = (end - start + 1).to_string();
        assert_eq!(header(&response, CONTENT_LENGTH), Some(length.as_str()));
        assert_eq!(header(&response, ACCEPT_RANGES), Some("bytes"));
        assert_eq!(body_bytes(response).await.as_ref(), &data[start..=end]);
    }

    #[tokio::test]
    async fn range_closed() {
        assert_partial("bytes=100-70000", 100, 70000).await;
    }

    #[tokio::test]
    async fn range_single_byte() {
        assert_partial("bytes=0-0", 0, 0).await;
    }

    #[tokio::test]
    async fn range_open_ended() {
        assert_partial("bytes=1000000-", 1_000_000, MIB - 1).await;
    }

    #[tokio::test]
    async fn range_suffix() {
        assert_partial("bytes=-500", MIB - 500, MIB - 1).await;
    }

    #[tokio::test]
    async fn range_end_past_eof_is_clamped() {
        assert_partial("bytes=1048000-99999999999999999999", 1_048_000, MIB - 1).await;
    }

    #[tokio::test]
    async fn range_start_past_eof_is_416() {
        let (_dir, path) = temp_file("image", &pattern(MIB));
        let response = get(&path, &[(RANGE, "bytes=1048576-")]).await;
        assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(header(&response, CONTENT_RANGE), Some("bytes */1048576"));
        assert_eq!(header(&response, CONTENT_LENGTH), Some("0"));
        assert!(body_bytes(response).await.is_empty());
    }

    #[tokio::test]
    async fn zero_suffix_is_416() {
        let (_dir, path) = temp_file("image", &pattern(1000));
        let response = get(&path, &[(RANGE, "bytes=-0")]).await;
        assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(header(&response, CONTENT_RANGE), Some("bytes */1000"));
    }

    /// Asserts the range header is ignored: 200 with the whole file.
    async fn assert_ignored(pairs: &[(HeaderName, &str)]) {
        let data = pattern(4096);
        let (_dir, path) = temp_file("image", &data);
        let response = get(&path, pairs).await;
        assert_eq!(response.status(), StatusCode::OK, "{pairs:?}");
        assert_eq!(header(&response, CONTENT_RANGE), None);
        assert_eq!(header(&response, CONTENT_LENGTH), Some("4096"));
        assert_eq!(body_bytes(response).await.as_ref(), data.as_slice());
    }

    #[tokio::test]
    async fn malformed_range_sends_whole_file() {
        for range in [
            "bytes=5-2",
            "bytes=abc",
            "items=0-1",
            "bytes=",
            "0-1",
            "bytes=-",
        ] {
            assert_ignored(&[(RANGE, range)]).await;
        }
    }

    #[tokio::test]
    async fn multi_range_sends_whole_file() {
        assert_ignored(&[(RANGE, "bytes=0-1,5-6")]).await;
    }

    #[tokio::test]
    async fn repeated_range_header_sends_whole_file() {
        assert_ignored(&[(RANGE, "bytes=0-1"), (RANGE, "bytes=5-6")]).await;
    }

    #[tokio::test]
    async fn if_range_with_other_date_sends_whole_file() {
        assert_ignored(&[
            (RANGE, "bytes=0-9"),
            (IF_RANGE, "Thu, 01 Jan 1998 00:00:00 GMT"),
        ])
        .await;
    }

    #[tokio::test]
    async fn if_range_with_etag_sends_whole_file() {
        assert_ignored(&[(RANGE, "bytes=0-9"), (IF_RANGE, "\"abc\"")]).await;
    }

    #[tokio::test]
    async fn if_range_with_matching_date_honours_range() {
        let data = pattern(4096);
        let (_dir, path) = temp_file("image", &data);
        let date = httpdate::fmt_http_date(mtime(&path));
        let response = get(&path, &[(RANGE, "bytes=10-19"), (IF_RANGE, &date)]).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(body_bytes(response).await.as_ref(), &data[10..20]);
    }

    #[tokio::test]
    async fn if_modified_since_current_is_304() {
        let (_dir, path) = temp_file("image", &pattern(4096));
        // Same second as the mtime (sub-second part dropped by formatting) and later both match.
        for since in [mtime(&path), mtime(&path) + Duration::from_secs(3600)] {
            let date = httpdate::fmt_http_date(since);
            let response = get(&path, &[(IF_MODIFIED_SINCE, &date), (RANGE, "bytes=9999-")]).await;
            assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
            assert_eq!(
                header(&response, LAST_MODIFIED),
                Some(date_of(&path).as_str())
            );
            assert_eq!(header(&response, CONTENT_LENGTH), None);
            assert!(body_bytes(response).await.is_empty());
        }
    }

    fn date_of(path: &Path) -> String {
        httpdate::fmt_http_date(mtime(path))
    }

    #[tokio::test]
    async fn if_modified_since_older_sends_file() {
        let data = pattern(4096);
        let (_dir, path) = temp_file("image", &data);
        let older = httpdate::fmt_http_date(mtime(&path) - Duration::from_secs(1));
        assert_ignored(&[(IF_MODIFIED_SINCE, &older)]).await;
        assert_ignored(&[(IF_MODIFIED_SINCE, "yesterday")]).await;
        let current = date_of(&path);
        // If-None-Match present: If-Modified-Since must be ignored.
        let response = get(
            &path,
            &[(IF_MODIFIED_SINCE, &current), (IF_NONE_MATCH, "*")],
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn missing_file_is_404() {
        let dir = tempfile::tempdir().expect("tempdir");
        let response = get(&dir.path().join("nope"), &[]).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(body_bytes(response).await.as_ref(), b"not found\n");
    }

    #[tokio::test]
    async fn directory_is_404() {
        let dir = tempfile::tempdir().expect("tempdir");
        let response = get(dir.path(), &[]).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn post_is_405() {
        let (_dir, path) = temp_file("image", b"x");
        let response = serve_file(&path, &Method::POST, &HeaderMap::new()).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(header(&response, ALLOW), Some("GET, HEAD"));
    }

    #[tokio::test]
    async fn empty_file_serves_empty_200_and_416_for_ranges() {
        let (_dir, path) = temp_file("empty", b"");
        let response = get(&path, &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, CONTENT_LENGTH), Some("0"));
        assert!(body_bytes(response).await.is_empty());
        let response = get(&path, &[(RANGE, "bytes=0-")]).await;
        assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(header(&response, CONTENT_RANGE), Some("bytes */0"));
    }

    #[tokio::test]
    async fn shrinking_file_ends_stream_with_error() {
        let data = pattern(MIB);
        let (_dir, path) = temp_file("image", &data);
        let response = get(&path, &[]).await;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open")
            .set_len(1000)
            .expect("truncate");
        let err = response
            .into_body()
            .collect()
            .await
            .expect_err("short body");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn pre_epoch_mtime_omits_last_modified() {
        let (_dir, path) = temp_file("old", b"abc");
        let file = std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("open");
        file.set_modified(UNIX_EPOCH - Duration::from_secs(86_400))
            .expect("set mtime");
        let response = get(&path, &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, LAST_MODIFIED), None);
        assert_eq!(body_bytes(response).await.as_ref(), b"abc");
    }

    // ---- serve_bytes ----

    fn bytes_response(pairs: &[(HeaderName, &str)], method: &Method) -> Response<Body> {
        let modified = UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        let data = Bytes::from_static(b"0123456789");
        serve_bytes(data, Some(modified), TEXT_PLAIN, method, &headers(pairs))
    }

    #[tokio::test]
    async fn serve_bytes_full_range_head_and_304() {
        let response = bytes_response(&[], &Method::GET);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, CONTENT_TYPE), Some(TEXT_PLAIN));
        assert_eq!(header(&response, CONTENT_LENGTH), Some("10"));
        let modified = "Tue, 14 Nov 2023 22:13:20 GMT";
        assert_eq!(header(&response, LAST_MODIFIED), Some(modified));
        assert_eq!(body_bytes(response).await.as_ref(), b"0123456789");

        let response = bytes_response(&[(RANGE, "bytes=-3")], &Method::GET);
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(header(&response, CONTENT_RANGE), Some("bytes 7-9/10"));
        assert_eq!(body_bytes(response).await.as_ref(), b"789");

        let response = bytes_response(&[], &Method::HEAD);
        assert_eq!(header(&response, CONTENT_LENGTH), Some("10"));
        assert!(body_bytes(response).await.is_empty());

        // Sub-second mtime must not defeat a 304 for a date of the same second.
        let response = bytes_response(&[(IF_MODIFIED_SINCE, modified)], &Method::GET);
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);

        let response = bytes_response(&[(RANGE, "bytes=10-")], &Method::GET);
        assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(header(&response, CONTENT_RANGE), Some("bytes */10"));
    }

    #[tokio::test]
    async fn serve_bytes_without_mtime_never_304() {
        let map = headers(&[(IF_MODIFIED_SINCE, "Tue, 14 Nov 2099 22:13:20 GMT")]);
        let response = serve_bytes(Bytes::new(), None, TEXT_PLAIN, &Method::GET, &map);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, LAST_MODIFIED), None);
    }

    // ---- parse_range (pure) ----

    use RangeDecision::{Ignore, Satisfiable, Unsatisfiable};

    fn sat(start: u64, end: u64) -> RangeDecision {
        Satisfiable { start, end }
    }

    #[test]
    fn parse_closed_ranges() {
        assert_eq!(parse_range("bytes=0-0", 10), sat(0, 0));
        assert_eq!(parse_range("bytes=0-9", 10), sat(0, 9));
        assert_eq!(parse_range("bytes=2-5", 10), sat(2, 5));
        assert_eq!(parse_range("bytes=9-9", 10), sat(9, 9));
        assert_eq!(parse_range("bytes=5-5", 10), sat(5, 5));
    }

    #[test]
    fn parse_end_clamped_to_length() {
        assert_eq!(parse_range("bytes=0-10", 10), sat(0, 9));
        assert_eq!(parse_range("bytes=3-1000", 10), sat(3, 9));
        assert_eq!(parse_range("bytes=0-18446744073709551615", 10), sat(0, 9));
        assert_eq!(parse_range("bytes=0-99999999999999999999", 10), sat(0, 9));
    }

    #[test]
    fn parse_open_ended() {
        assert_eq!(parse_range("bytes=0-", 10), sat(0, 9));
        assert_eq!(parse_range("bytes=9-", 10), sat(9, 9));
        assert_eq!(parse_range("bytes=10-", 10), Unsatisfiable);
        assert_eq!(
            parse_range("bytes=99999999999999999999-", 10),
            Unsatisfiable
        );
    }

    #[test]
    fn parse_suffix() {
        assert_eq!(parse_range("bytes=-1", 10), sat(9, 9));
        assert_eq!(parse_range("bytes=-4", 10), sat(6, 9));
        assert_eq!(parse_range("bytes=-10", 10), sat(0, 9));
        assert_eq!(parse_range("bytes=-11", 10), sat(0, 9));
        assert_eq!(parse_range("bytes=-99999999999999999999", 10), sat(0, 9));
        assert_eq!(parse_range("bytes=-0", 10), Unsatisfiable);
        assert_eq!(parse_range("bytes=-000", 10), Unsatisfiable);
    }

    #[test]
    fn parse_unsatisfiable_start() {
        assert_eq!(parse_range("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(parse_range("bytes=11-11", 10), Unsatisfiable);
        assert_eq!(
            parse_range("bytes=18446744073709551615-18446744073709551615", 10),
            Unsatisfiable
        );
    }

    #[test]
    fn parse_reversed_is_ignored() {
        assert_eq!(parse_range("bytes=5-2", 10), Ignore);
        assert_eq!(parse_range("bytes=50-20", 10), Ignore);
        assert_eq!(parse_range("bytes=99999999999999999999-5", 10), Ignore);
    }

    #[test]
    fn parse_malformed_is_ignored() {
        for header in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=--5",
            "bytes=a-5",
            "bytes=5-b",
            "bytes=+5-6",
            "bytes=5-+6",
            "bytes=0x10-20",
            "bytes=1.5-2",
            "bytes=1 0-20",
            "bytes=5",
            "bytes=5-6-7",
            "bytes 0-5",
            "bytes:0-5",
            "=0-5",
            "items=0-5",
            "bytesx=0-5",
            "bytes=٣-٥",
        ] {
            assert_eq!(parse_range(header, 10), Ignore, "{header:?}");
        }
    }

    #[test]
    fn parse_multi_range_is_ignored() {
        assert_eq!(parse_range("bytes=0-1,5-6", 10), Ignore);
        assert_eq!(parse_range("bytes=0-1, 5-6", 10), Ignore);
        assert_eq!(parse_range("bytes=0-1,", 10), Ignore);
        assert_eq!(parse_range("bytes=,0-1", 10), Ignore);
        assert_eq!(parse_range("bytes=-1,-2", 10), Ignore);
    }

    #[test]
    fn parse_unit_case_insensitive() {
        assert_eq!(parse_range("BYTES=1-2", 10), sat(1, 2));
        assert_eq!(parse_range("Bytes=1-2", 10), sat(1, 2));
        assert_eq!(parse_range("bYtEs=-2", 10), sat(8, 9));
    }

    #[test]
    fn parse_tolerates_whitespace_around_tokens() {
        assert_eq!(parse_range(" bytes=1-2 ", 10), sat(1, 2));
        assert_eq!(parse_range("bytes = 1-2", 10), sat(1, 2));
        assert_eq!(parse_range("bytes= 1 - 2", 10), sat(1, 2));
        assert_eq!(parse_range("bytes=\t1-\t", 10), sat(1, 9));
        assert_eq!(parse_range("bytes= - 3", 10), sat(7, 9));
    }

    #[test]
    fn parse_empty_representation() {
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-100", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-1", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-2", 0), Ignore);
        assert_eq!(parse_range("junk", 0), Ignore);
    }

    #[test]
    fn parse_huge_length() {
        let len = u64::MAX;
        assert_eq!(parse_range("bytes=0-", len), sat(0, u64::MAX - 1));
        assert_eq!(
            parse_range("bytes=-1", len),
            sat(u64::MAX - 1, u64::MAX - 1)
        );
        assert_eq!(
            parse_range("bytes=-99999999999999999999", len),
            sat(0, u64::MAX - 1)
        );
    }

    /// Exhaustive check against a brute-force model over small lengths and positions: every
    /// satisfiable answer lies inside the file and matches the RFC's arithmetic.
    #[test]
    fn parse_matches_model_exhaustively() {
        for len in 0..12u64 {
            for a in 0..15u64 {
                for b in 0..15u64 {
                    let expected = if a > b {
                        Ignore
                    } else if a >= len {
                        Unsatisfiable
                    } else {
                        sat(a, b.min(len - 1))
                    };
                    assert_eq!(parse_range(&format!("bytes={a}-{b}"), len), expected);
                }
                let open = if a >= len {
                    Unsatisfiable
                } else {
                    sat(a, len - 1)
                };
                assert_eq!(parse_range(&format!("bytes={a}-"), len), open);
                let suffix = if a == 0 || len == 0 {
                    Unsatisfiable
                } else {
                    sat(len - a.min(len), len - 1)
                };
                assert_eq!(parse_range(&format!("bytes=-{a}"), len), suffix);
            }
        }
    }

    #[test]
    fn http_time_truncates_and_bounds() {
        let t = UNIX_EPOCH + Duration::from_millis(1_500);
        assert_eq!(http_time(t), Some(UNIX_EPOCH + Duration::from_secs(1)));
        assert_eq!(http_time(UNIX_EPOCH - Duration::from_secs(1)), None);
        let far = UNIX_EPOCH + Duration::from_secs(253_402_300_800);
        assert_eq!(http_time(far), None);
        let last = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
        assert_eq!(http_time(last), Some(last));
        // The bound is exactly what httpdate can format without panicking.
        assert_eq!(
            httpdate::fmt_http_date(last),
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
    }

    #[test]
    fn content_types() {
        for name in ["a.ipxe", "b.cfg", "c.conf", "d.txt", "E.TXT"] {
            assert_eq!(content_type_for(Path::new(name)), TEXT_PLAIN, "{name}");
        }
        for name in ["vmlinuz", "initrd.img", "snp.efi", "x.iso", "noext."] {
            assert_eq!(content_type_for(Path::new(name)), OCTET_STREAM, "{name}");
        }
    }
}
