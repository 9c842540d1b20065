//! The render worker: a child process (`ironpxe __render-worker`) that parses templates and
//! renders them, so that no template can cost the server more than a killed process.
//!
//! Tera 1.20 has no cost counter and no cancellation, and a thread cannot be stopped from
//! outside: a template whose loops run for minutes, whose strings double until memory runs
//! out, or whose recursion overflows the stack (an abort, not a panic) would take the whole
//! server with it. In a child process the worst case is bounded and clean: the parent kills
//! it at the end of the render budget, an address-space limit turns runaway allocation into
//! the child's own failure, and a stack overflow ends only the child.
//!
//! The protocol is length-prefixed JSON on the child's stdin and stdout: one request, one
//! reply. The worker keeps the last template set it was sent and exits when its parent goes
//! away (stdin closes, or it is re-parented).

use std::io::{self, Read, Write};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tera::Tera;

use super::load;
use super::Format;

/// The hidden first argument that makes `ironpxe` a render worker.
pub const WORKER_ARG: &str = "__render-worker";

/// Largest frame either side accepts: a rendered config is at most 1 MiB (`load::OUTPUT_MAX`),
/// a template set a few hundred KB.
const FRAME_MAX: usize = 16 << 20;

/// What the server asks a worker.
#[derive(Serialize, Deserialize, Debug)]
pub enum Request {
    /// Parse and check a template set and keep it for the renders that follow.
    Load { sources: Vec<(String, String)> },
    /// Parse, check and trial-render a candidate set (an operator's edit).
    Trial {
        sources: Vec<(String, String)>,
        ramdisk_params: String,
    },
    /// Render one format with a context built by the server.
    Render {
        format: Format,
        context: serde_json::Value,
    },
}

/// A worker's answer.
#[derive(Serialize, Deserialize, Debug)]
pub enum Reply {
    Ok,
    Rendered(String),
    /// The set or the render was refused, with every reason.
    Refused(Vec<String>),
}

/// Writes one frame: a 4-byte little-endian length, then JSON.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&n| n as usize <= FRAME_MAX)
        .ok_or_else(|| io::Error::other("frame too large"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&body)?;
    w.flush()
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub fn read_frame<R: Read, T: for<'de> Deserialize<'de>>(r: &mut R) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > FRAME_MAX {
        return Err(io::Error::other(format!("frame of {len} bytes refused")));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(io::Error::other)
}

/// The worker's main loop; returns when the server closes stdin.
pub fn run(memory_limit: u64) -> io::Result<()> {
    limit_memory(memory_limit);
    exit_with_parent();
    let stdin = io::stdin();
    let stdout = io::stdout();
    let (mut input, mut output) = (stdin.lock(), stdout.lock());
    let mut tera: Option<Tera> = None;
    while let Some(req) = read_frame::<_, Request>(&mut input)? {
        let reply = answer(req, &mut tera);
        write_frame(&mut output, &reply)?;
    }
    Ok(())
}

fn answer(req: Request, current: &mut Option<Tera>) -> Reply {
    match req {
        Request::Load { sources } => match load::build(sources) {
            Ok(t) => {
                *current = Some(t);
                Reply::Ok
            }
            Err(errs) => Reply::Refused(errs),
        },
        Request::Trial {
            sources,
            ramdisk_params,
        } => match load::build(sources).and_then(|t| load::trial_render(&t, &ramdisk_params)) {
            Ok(()) => Reply::Ok,
            Err(errs) => Reply::Refused(errs),
        },
        Request::Render { format, context } => {
            let Some(tera) = current.as_ref() else {
                return Reply::Refused(vec!["no templates loaded".into()]);
            };
            match super::render_value(tera, format, context) {
                Ok(body) => Reply::Rendered(body),
                Err(e) => Reply::Refused(vec![e.to_string()]),
            }
        }
    }
}

/// Caps the worker's address space: a template that builds ever larger strings fails its
/// own allocation instead of pushing the host into swap or the OOM killer.
fn limit_memory(bytes: u64) {
    if bytes > 0 {
        let _ = rlimit::setrlimit(rlimit::Resource::AS, bytes, bytes);
    }
}

/// A worker busy in a runaway render does not read stdin, so it would not notice its
/// server's death: a watchdog thread exits when the worker is re-parented.
fn exit_with_parent() {
    let parent = std::os::unix::process::parent_id();
    let _ = std::thread::Builder::new()
        .name("parent watchdog".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(250));
            if std::os::unix::process::parent_id() != parent {
                std::process::exit(1);
            }
        });
}

/// Environment variable carrying the worker's address-space limit in bytes.
pub const MEMORY_ENV: &str = "IRONPXE_RENDER_WORKER_MEMORY";

/// Entry point from `main`: runs the worker when the first argument asks for it.
pub fn main_if_worker() -> Option<std::process::ExitCode> {
    if std::env::args_os().nth(1).as_deref() != Some(std::ffi::OsStr::new(WORKER_ARG)) {
        return None;
    }
    let memory = std::env::var(MEMORY_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(match run(memory) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_or_truncated_frames_are_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &Reply::Rendered("x\ny".into())).expect("write");
        let back: Option<Reply> = read_frame(&mut buf.as_slice()).expect("read");
        assert!(matches!(back, Some(Reply::Rendered(s)) if s == "x\ny"));
        let empty: Option<Reply> = read_frame(&mut &b""[..]).expect("eof");
        assert!(empty.is_none());
        let huge = (FRAME_MAX as u32 + 1).to_le_bytes();
        assert!(read_frame::<_, Reply>(&mut &huge[..]).is_err());
        let cut = [10, 0, 0, 0, b'{'];
        assert!(read_frame::<_, Reply>(&mut &cut[..]).is_err());
    }
}
