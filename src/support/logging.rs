//! Log records stay one line each, whatever a client or node state wrote.
//!
//! Node names, TFTP file names, HTTP paths, and the error messages that quote them reach the
//! log as field values or inside a message, often through `Display` (`error = %e`), which
//! writes them raw. A newline in one would start a line that reads as a record of its own
//! (`… ERROR forged`), and an escape sequence would rewrite the operator's terminal. Rather
//! than relying on every call site to choose `?value`, [`EscapedFields`] formats the fields
//! of every event and span, the message included, and escapes control characters in all of
//! them: the rule lives in one place and no call site can forget it.
//!
//! The output is otherwise the default formatter's: the message first, then `name=value`.

use std::error::Error;
use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;

/// Formats event and span fields like tracing-subscriber's default, with every control
/// character (and Unicode line separators and bidirectional overrides) escaped: `\n`, `\r`,
/// `\t`, else `\u{…}`. Plain text and `Debug` output that is already escaped pass unchanged.
#[derive(Clone, Copy, Debug, Default)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut v = Visitor {
            out: Escaping(writer),
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

/// True for the characters a log line must not carry raw: they end a line, move the cursor,
/// start a terminal escape, or reorder what the operator reads.
fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A writer that escapes what [`must_escape`] names as it passes through.
struct Escaping<W>(W);

impl<W: fmt::Write> fmt::Write for Escaping<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(must_escape) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "\\u{{{:x}}}", u32::from(c))?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

struct Visitor<'w> {
    out: Escaping<Writer<'w>>,
    first: bool,
    result: fmt::Result,
}

impl Visitor<'_> {
    fn write(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        let name = field.name();
        // Metadata of `log` records, already shown as the target (tracing-log).
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let pad = if self.first { "" } else { " " };
        self.first = false;
        self.result = match name {
            "message" => write!(self.out, "{pad}{value}"),
            name => {
                let name = name.strip_prefix("r#").unwrap_or(name);
                write!(self.out, "{pad}{name}={value}")
            }
        };
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.write(field, format_args!("{value}"));
        } else {
            self.write(field, format_args!("{value:?}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        if source.is_some() {
            let name = field.name();
            let mut sep = "[";
            let _ = write!(text, " {name}.sources=");
            while let Some(s) = source {
                let _ = write!(text, "{sep}{s}");
                sep = ", ";
                source = s.source();
            }
            text.push(']');
        }
        self.write(field, format_args!("{text}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, format_args!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A `MakeWriter` collecting everything logged.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Sink {
        type Writer = Sink;
        fn make_writer(&'a self) -> Sink {
            self.clone()
        }
    }

    fn logged(f: impl FnOnce()) -> String {
        let sink = Sink::default();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(EscapedFields)
            .with_writer(sink.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = sink.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[derive(Debug)]
    struct Wrapped(io::Error);
    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer\nFAKE")
        }
    }
    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    /// Every way a hostile string reaches a record — `Display`, a `&str` field, the
    /// message, an error and its sources, a span field — yields one line with the
    /// characters escaped.
    #[test]
    fn control_characters_in_any_field_never_start_a_line() {
        let hostile = "n1\n2024-01-01T00:00:00Z ERROR forged\r\x1b[2J\u{2028}x\u{202e}";
        let out = logged(|| {
            let span = tracing::info_span!("req", name = %hostile);
            let _g = span.enter();
            tracing::error!(error = %hostile, "display");
            tracing::warn!(name = hostile, "str");
            tracing::info!("message {hostile}");
            let e = Wrapped(io::Error::other("inner\nFAKE"));
            tracing::error!(error = &e as &(dyn Error + 'static), "error");
            tracing::info!(path = ?hostile, "debug");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 5, "{out}");
        for l in &lines {
            assert!(
                !l.chars().any(must_escape) && l.contains("n1\\n2024") && l.contains("req{"),
                "{l:?}"
            );
        }
        assert!(lines[0].ends_with(
            "display error=n1\\n2024-01-01T00:00:00Z ERROR forged\\r\\u{1b}[2J\\u{2028}x\\u{202e}"
        ), "{}", lines[0]);
        assert!(
            lines[3].ends_with("error error=outer\\nFAKE error.sources=[inner\\nFAKE]"),
            "{}",
            lines[3]
        );
    }

    /// What needs no escaping is written as the default formatter writes it.
    #[test]
    fn plain_fields_look_like_the_default_format() {
        let out = logged(|| {
            tracing::info!(client = %"10.0.0.1:69", name = "pxelinux.0", bytes = 3, "tftp request");
        });
        assert!(
            out.trim_end()
                .ends_with("tftp request client=10.0.0.1:69 name=\"pxelinux.0\" bytes=3"),
            "{out}"
        );
    }
}
