//! The line format: tracing-subscriber's text or JSON line, with the id of the request being
//! served added when there is one ([`super::request`]).
//!
//! A line logged outside a request is written as the inner format writes it. A line logged
//! inside one is formatted into a buffer first and the id spliced in: `request_id=<id>` at
//! the end of a text line, `"request_id":"<id>"` as the first member of a JSON object. The
//! buffer is the price of a logged line, never of a request that logs nothing.

use std::fmt::{self, Write as _};

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::request;

/// How the request id joins a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `… request_id=<id>` before the line's end.
    Text,
    /// `{"request_id":"<id>",…}`.
    Json,
}

/// An event format that adds the current request's id to what `inner` writes.
#[derive(Debug, Clone)]
pub struct WithRequestId<F> {
    inner: F,
    shape: Shape,
}

impl<F> WithRequestId<F> {
    /// `inner`, whose lines have the given `shape`.
    pub fn new(inner: F, shape: Shape) -> Self {
        Self { inner, shape }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithRequestId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(id) = request::with_current(ToString::to_string) else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&splice(&line, &id, self.shape))
    }
}

/// `line` with `id` added in the way of `shape`. A line that does not have the expected
/// form (a JSON line that is not an object) gets the id at its end, text-style.
fn splice(line: &str, id: &str, shape: Shape) -> String {
    let (body, end) = match line.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (line, ""),
    };
    let mut out = String::with_capacity(line.len() + id.len() + 16);
    match (shape, body.strip_prefix('{')) {
        (Shape::Json, Some(members)) => {
            out.push_str("{\"request_id\":");
            out.push_str(&serde_json::Value::from(id).to_string());
            if members != "}" {
                out.push(',');
            }
            out.push_str(members);
        }
        _ => {
            out.push_str(body);
            let _ = write!(out, " request_id={id}");
        }
    }
    out.push_str(end);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_text_line_ends_with_the_id() {
        let line = "2026-12-01T00:00:00Z  INFO flashgate::access: request answered status=404\n";
        assert_eq!(
            splice(line, "abc-1", Shape::Text),
            "2026-12-01T00:00:00Z  INFO flashgate::access: request answered status=404 request_id=abc-1\n"
        );
    }

    #[test]
    fn a_json_line_gets_the_id_as_its_first_member_and_stays_json() {
        for id in ["abc-1", r#"q"uote\back"#] {
            let line = "{\"level\":\"INFO\",\"fields\":{\"status\":404}}\n";
            let out = splice(line, id, Shape::Json);
            assert!(out.ends_with('\n'));
            let value: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(value["request_id"], id);
            assert_eq!(value["fields"]["status"], 404);
            let empty: Value = serde_json::from_str(&splice("{}\n", id, Shape::Json)).unwrap();
            assert_eq!(empty["request_id"], id);
        }
    }
}
