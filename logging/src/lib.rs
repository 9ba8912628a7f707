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

/// Installs the global subscriber writing to standard output; `default_filter` applies when
/// `RUST_LOG` is unset.
pub fn init(args: LogArgs, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    install(args.log_format, filter, colours(), std::io::stdout);
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
