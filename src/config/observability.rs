//! Where logs and traces go: readable text on standard error always, JSON lines to a file
//! (`JSON_LOGGING_ENABLED`, `JSON_LOG_PATH`), and traces over OTLP/HTTP when a collector is named
//! with the standard OpenTelemetry variables.

use std::path::PathBuf;

use super::{Reader, Secret};

/// The original server's JSON log file, relative to the working directory.
pub const DEFAULT_JSON_LOG_PATH: &str = "logs/sustainbot.jsonl";

/// Logs and traces.
#[derive(Debug, Clone, Default)]
pub struct LoggingConfig {
    /// `JSON_LOGGING_ENABLED=true`: JSON lines as well as the readable text; `None` when off.
    pub json: Option<JsonLog>,
    /// Traces over OTLP; `None` when no collector is named (nothing of OpenTelemetry runs then).
    pub traces: Option<TracesConfig>,
}

/// Where JSON lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonLog {
    /// Appended to this file (created with its directory; reopened on SIGHUP), while readable text
    /// still goes to standard error.
    File(PathBuf),
    /// `JSON_LOG_PATH=-`: to standard error instead of the readable text (for a container's log
    /// collector).
    Stderr,
}

/// Traces exported over OTLP/HTTP with protobuf bodies (the only OTLP transport built in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracesConfig {
    /// The collector's traces URL: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` appended. Secret: a URL may hold a password.
    pub endpoint: Secret,
}

impl LoggingConfig {
    pub fn read(reader: &mut Reader<'_>) -> LoggingConfig {
        let json = reader.flag("JSON_LOGGING_ENABLED", false).then(|| {
            match reader.text("JSON_LOG_PATH").as_deref() {
                Some("-") => JsonLog::Stderr,
                path => JsonLog::File(PathBuf::from(path.unwrap_or(DEFAULT_JSON_LOG_PATH))),
            }
        });
        LoggingConfig {
            json,
            traces: TracesConfig::read(reader),
        }
    }
}

impl TracesConfig {
    /// The standard variables (the OpenTelemetry specification's "SDK environment variables"):
    /// exporting is on when an endpoint is set, unless `OTEL_SDK_DISABLED=true` or
    /// `OTEL_TRACES_EXPORTER=none`. What this build cannot do (gRPC, compression) is refused.
    pub fn read(reader: &mut Reader<'_>) -> Option<TracesConfig> {
        let signal = reader.text("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        let base = reader.text("OTEL_EXPORTER_OTLP_ENDPOINT");
        let (name, endpoint) = match (signal, base) {
            (Some(url), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url),
            (None, Some(base)) => ("OTEL_EXPORTER_OTLP_ENDPOINT", traces_url(&base)),
            (None, None) => return None,
        };
        let disabled = reader.flag("OTEL_SDK_DISABLED", false);
        let exporter = reader.text("OTEL_TRACES_EXPORTER");
        let exporting = match exporter.as_deref() {
            None | Some("otlp") => true,
            Some("none") => false,
            Some(other) => {
                reader.problems.push(format!(
                    "OTEL_TRACES_EXPORTER must be otlp or none, not '{other}'"
                ));
                false
            }
        };
        let protocol = reader
            .text("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| reader.text("OTEL_EXPORTER_OTLP_PROTOCOL"));
        if let Some(protocol) = protocol.filter(|p| p != "http/protobuf") {
            reader.problems.push(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf (the only OTLP transport built in), not '{protocol}'"
            ));
        }
        for variable in [
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ] {
            if reader.text(variable).is_some() {
                reader.problems.push(format!(
                    "{variable}: compression is not built in; leave it unset"
                ));
            }
        }
        match reqwest::Url::parse(&endpoint) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            // The value may hold a password: never repeated in the message.
            _ => reader
                .problems
                .push(format!("{name} must be an http:// or https:// URL")),
        }
        (exporting && !disabled).then(|| TracesConfig {
            endpoint: Secret::new(endpoint),
        })
    }
}

/// `OTEL_EXPORTER_OTLP_ENDPOINT` is a base URL: the traces path goes under its path.
fn traces_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::{section, ConfigError};

    fn read(vars: &[(&str, &str)]) -> Result<LoggingConfig, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        section(&|name| map.get(name).cloned(), LoggingConfig::read)
    }

    fn endpoint(config: &LoggingConfig) -> Option<&str> {
        config.traces.as_ref().map(|t| t.endpoint.expose())
    }

    #[test]
    fn json_lines_go_to_the_original_file_unless_told_otherwise() {
        assert_eq!(read(&[]).unwrap().json, None);
        let on = read(&[("JSON_LOGGING_ENABLED", "true")]).unwrap();
        assert_eq!(on.json, Some(JsonLog::File(DEFAULT_JSON_LOG_PATH.into())));
        let file = read(&[
            ("JSON_LOGGING_ENABLED", "true"),
            ("JSON_LOG_PATH", "/x.jsonl"),
        ]);
        assert_eq!(file.unwrap().json, Some(JsonLog::File("/x.jsonl".into())));
        let stderr = read(&[("JSON_LOGGING_ENABLED", "true"), ("JSON_LOG_PATH", "-")]);
        assert_eq!(stderr.unwrap().json, Some(JsonLog::Stderr));
        let off = read(&[("JSON_LOG_PATH", "/x.jsonl")]).unwrap();
        assert_eq!(off.json, None);
    }

    #[test]
    fn traces_are_exported_only_when_an_endpoint_is_set() {
        assert_eq!(endpoint(&read(&[]).unwrap()), None);
        let base = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]).unwrap();
        assert_eq!(endpoint(&base), Some("http://collector:4318/v1/traces"));
        let signal = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://c.example/traces",
            ),
        ]);
        assert_eq!(endpoint(&signal.unwrap()), Some("https://c.example/traces"));
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            let config = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), off]).unwrap();
            assert_eq!(endpoint(&config), None, "{off:?}");
        }
    }

    #[test]
    fn refuses_what_this_build_cannot_export() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        for (bad, says) in [
            (("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), "http/protobuf"),
            (
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
                "http/protobuf",
            ),
            (("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"), "compression"),
            (("OTEL_TRACES_EXPORTER", "jaeger"), "otlp or none"),
        ] {
            let refused = read(&[endpoint, bad]).unwrap_err().to_string();
            assert!(refused.contains(says), "{bad:?}: {refused}");
        }
        let refused = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318 pw")]);
        let text = refused.unwrap_err().to_string();
        assert!(text.contains("http://") && !text.contains("pw"), "{text}");
    }
}
