//! Traces: OpenTelemetry spans exported over OTLP (HTTP, protobuf) when the standard
//! `OTEL_EXPORTER_OTLP_*` variables (or the plan's `OTLP_ENDPOINT`, `OTLP_HEADERS`,
//! `OTLP_TIMEOUT_MS`) name an endpoint; off, and free, when they do not. The spans themselves
//! are `tracing` spans (HTTP calls, submit, actions, timers, commits, deliveries); this module
//! turns them into OpenTelemetry ones and carries W3C `traceparent` in and out.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The exporting tracer provider; `shutdown` sends what is still buffered.
pub struct Traces(SdkTracerProvider);

/// The share of traces started here that are kept when `OTEL_TRACES_SAMPLER` is not set; a
/// trace a caller started and sampled is always followed.
pub const DEFAULT_RATIO: f64 = 0.1;

/// The sampler `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` name (the standard values);
/// without them, the parent's decision, else `DEFAULT_RATIO` of new traces.
fn sampler() -> Result<Sampler, String> {
    let arg = match std::env::var("OTEL_TRACES_SAMPLER_ARG").ok().filter(|v| !v.trim().is_empty()) {
        None => None,
        Some(v) => match v.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Some(r),
            _ => return Err(format!("OTEL_TRACES_SAMPLER_ARG: `{v}` is not a ratio between 0 and 1")),
        },
    };
    let ratio = |default: f64| Sampler::TraceIdRatioBased(arg.unwrap_or(default));
    let name = std::env::var("OTEL_TRACES_SAMPLER").ok().map(|v| v.trim().to_ascii_lowercase()).filter(|v| !v.is_empty());
    Ok(match name.as_deref() {
        None => Sampler::ParentBased(Box::new(ratio(DEFAULT_RATIO))),
        Some("always_on") => Sampler::AlwaysOn,
        Some("always_off") => Sampler::AlwaysOff,
        Some("traceidratio") => ratio(1.0),
        Some("parentbased_always_on") => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        Some("parentbased_always_off") => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        Some("parentbased_traceidratio") => Sampler::ParentBased(Box::new(ratio(1.0))),
        Some(other) => {
            return Err(format!(
                "OTEL_TRACES_SAMPLER: `{other}` is not one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio"
            ));
        }
    })
}

/// The variable `name`, or its alias from the plan, if either is set and not empty.
fn var(name: &str, alias: &str) -> Option<String> {
    std::env::var(name).ok().or_else(|| std::env::var(alias).ok()).filter(|v| !v.trim().is_empty())
}

impl Traces {
    /// The exporter the environment asks for; `None` when no endpoint is set.
    pub fn from_env() -> Result<Option<Traces>, String> {
        let traces_endpoint = std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").ok().filter(|v| !v.is_empty());
        let base = var("OTEL_EXPORTER_OTLP_ENDPOINT", "OTLP_ENDPOINT");
        let endpoint = match (traces_endpoint, base) {
            (Some(e), _) => e,
            (None, Some(b)) => format!("{}/v1/traces", b.trim_end_matches('/')),
            (None, None) => return Ok(None),
        };
        let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http().with_protocol(opentelemetry_otlp::Protocol::HttpBinary).with_endpoint(endpoint.clone());
        if let Some(h) = var("OTEL_EXPORTER_OTLP_HEADERS", "OTLP_HEADERS") {
            let headers: HashMap<String, String> = h
                .split(',')
                .filter(|kv| !kv.trim().is_empty())
                .map(|kv| kv.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).ok_or_else(|| format!("OTEL_EXPORTER_OTLP_HEADERS: `{kv}` is not key=value")))
                .collect::<Result<_, _>>()?;
            exporter = exporter.with_headers(headers);
        }
        if let Some(t) = var("OTEL_EXPORTER_OTLP_TIMEOUT", "OTLP_TIMEOUT_MS") {
            let ms: u64 = t.trim().parse().map_err(|_| format!("OTEL_EXPORTER_OTLP_TIMEOUT: `{t}` is not a number of milliseconds"))?;
            exporter = exporter.with_timeout(Duration::from_millis(ms));
        }
        let exporter = exporter.build().map_err(|e| format!("OTLP exporter for {endpoint}: {e}"))?;
        let service = std::env::var("OTEL_SERVICE_NAME").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "signoff".into());
        let resource = opentelemetry_sdk::Resource::builder().with_service_name(service).build();
        let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_sampler(sampler()?).with_resource(resource).build();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        Ok(Some(Traces(provider)))
    }

    /// The layer that turns `tracing` spans into exported ones.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer().with_tracer(self.0.tracer("signoff"))
    }

    /// Sends what is buffered and stops.
    pub fn shutdown(&self) {
        let _ = self.0.shutdown();
    }
}

struct Headers<'a>(&'a axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes `span` continue the trace an incoming call's `traceparent` names, if it names one.
pub fn continue_from(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&Headers(headers));
        let _ = span.set_parent(parent);
    }
}

struct Outgoing<'a>(&'a mut Vec<(String, String)>);

impl Injector for Outgoing<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_string(), value));
    }
}

/// The trace the current span belongs to, in hex, for log lines; empty when tracing is off.
pub fn current_trace_id() -> String {
    use opentelemetry::trace::TraceContextExt as _;
    let context = tracing::Span::current().context();
    let span = context.span();
    let sc = span.span_context();
    if sc.is_valid() { sc.trace_id().to_string() } else { String::new() }
}

/// The current span's W3C `traceparent`, to store beside work it queues; none when tracing is
/// off.
pub fn current_traceparent() -> Option<String> {
    outgoing_headers().into_iter().find(|(k, _)| k == "traceparent").map(|(_, v)| v)
}

/// Makes `span` a child of the span `traceparent` names (stored with queued work).
pub fn continue_stored(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
}

/// The `traceparent` (and `tracestate`) headers of the current span, for an outgoing call;
/// none when tracing is off.
pub fn outgoing_headers() -> Vec<(String, String)> {
    let mut headers = Vec::new();
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut Outgoing(&mut headers));
    headers
}
