//! Log setup shared by `cairn-gateway`, `cairn-storage-node` and `cairn-operator`.
//!
//! `--log-format text` (the default; `CAIRN_LOG_FORMAT`) writes human-readable lines, with ANSI
//! colours only when standard output is a terminal (and `NO_COLOR` is unset): a pod's log, a
//! file or a pipe gets plain text. `--log-format json` writes one JSON object per line
//! (`timestamp`, `level`, `target`, the event's fields, the current span), as log collectors
//! expect. `RUST_LOG` sets the filter.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The `--log-format` flag, to `#[command(flatten)]` into a binary's arguments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct LogArgs {
    /// Log line format: `text` (colours only on a terminal) or `json` (one object per line).
    #[arg(
        long,
        env = "CAIRN_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        global = true
    )]
    pub log_format: LogFormat,
}

/// Whether text logs get colours: only on a terminal, and not with `NO_COLOR` set.
pub fn colours() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Targets that log secrets below some level, and the most verbose level they may log at
/// whatever `RUST_LOG` says: s3s logs the signature it expected (which opens the request it was
/// computed for) at debug level.
const SECRET_BEARING: &[&str] = &["s3s::ops::signature=info"];

/// `filter` with [`SECRET_BEARING`] targets capped, so no log level shows a secret.
pub fn secret_free(mut filter: EnvFilter) -> EnvFilter {
    for d in SECRET_BEARING {
        filter = filter.add_directive(d.parse().expect("a valid directive"));
    }
    filter
}

/// Installs the global subscriber writing to standard output; `default_filter` applies when
/// `RUST_LOG` is unset.
pub fn init(args: LogArgs, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    install(
        args.log_format,
        secret_free(filter),
        colours(),
        std::io::stdout,
    );
}

fn install<W>(format: LogFormat, filter: EnvFilter, ansi: bool, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder
            .json()
            .with_ansi(false)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        log: LogArgs,
    }

    #[test]
    fn signatures_are_never_logged_whatever_the_filter() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        for spec in ["trace", "debug", "s3s=trace", "s3s::ops::signature=trace"] {
            let out = Buffer::default();
            let writer = out.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(secret_free(EnvFilter::new(spec)))
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                tracing::debug!(target: "s3s::ops::signature", expected = "deadbeef", "signature mismatch");
                tracing::info!(target: "s3s::ops::signature", "checked");
                tracing::debug!(target: "s3s::ops::other", "other debug");
            });
            let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
            assert!(!text.contains("deadbeef"), "{spec}: {text}");
            assert!(text.contains("checked"), "{spec}: {text}");
            if spec != "s3s::ops::signature=trace" {
                assert!(text.contains("other debug"), "{spec}: {text}");
            }
        }
    }

    #[test]
    fn the_flag_parses() {
        assert_eq!(
            Cli::try_parse_from(["x"]).unwrap().log.log_format,
            LogFormat::Text
        );
        assert_eq!(
            Cli::try_parse_from(["x", "--log-format", "json"])
                .unwrap()
                .log
                .log_format,
            LogFormat::Json
        );
        assert!(Cli::try_parse_from(["x", "--log-format", "xml"]).is_err());
    }
}
