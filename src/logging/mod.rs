//! Logging: the `[log]` settings and the process's tracing subscriber, chosen once at
//! start-up. `RUST_LOG` filters (default `info`); `log.format` picks one JSON object per
//! line (for log shippers) or human-readable text, both on stderr. A line logged while a
//! request is being served carries that request's id ([`request`]): in JSON as the member
//! `request_id`, in text as `request_id=…` at the line's end ([`format`]).

pub mod format;
pub mod request;

use std::io::IsTerminal;

use serde::Deserialize;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Format;

use self::format::{Shape, WithRequestId};

/// `[log]`: how the gateway logs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// Give every request an id (`X-Request-Id`, log lines, problem `instance`).
    pub request_ids: bool,
    /// One line per answered request at `info` (target `flashgate::access`); needs
    /// `request_ids`.
    pub access: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            request_ids: true,
            access: false,
        }
    }
}

/// The shape of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the process's subscriber for `settings`, filtered by `RUST_LOG` (default
/// `info`). Does nothing if one is installed already. Colours only on a terminal: a log
/// file or a log shipper gets plain text.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let installed = match settings.format {
        LogFormat::Text => builder
            .event_format(WithRequestId::new(
                Format::default().with_ansi(ansi),
                Shape::Text,
            ))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .map_event_format(|json| WithRequestId::new(json, Shape::Json))
            .try_init(),
    };
    // A subscriber set before (a test harness, an embedding program) stays.
    drop(installed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_reads_as_its_lowercase_name() {
        let json: LogSettings = serde_json::from_str(r#"{"format": "json"}"#).unwrap();
        assert_eq!(json.format, LogFormat::Json);
        assert!(json.request_ids && !json.access);
        assert!(serde_json::from_str::<LogSettings>(r#"{"format": "xml"}"#).is_err());
    }
}
