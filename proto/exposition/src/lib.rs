//! Orca's Prometheus wire. Every daemon writes its metrics as OpenMetrics (what
//! `prometheus-client` encodes) and serves them as the scraper asks, the way Prometheus's own
//! client libraries negotiate: OpenMetrics 1.0 to a Prometheus server (which asks for it
//! first), the Prometheus text format 0.0.4 to everyone else (`curl`, `promtool check
//! metrics`, older scrapers), where counter families are named with their `_total`.
use axum::{
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Joins OpenMetrics expositions into one (one `# EOF`, at the end).
pub fn join<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for part in parts {
        let body = part.trim_end();
        let body = body.strip_suffix("# EOF").unwrap_or(body).trim_end();
        if !body.is_empty() {
            out.push_str(body);
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
    out
}

/// Whether an `Accept` header prefers OpenMetrics to the text format (by q-value; equal
/// preference goes to OpenMetrics, no header to the text format).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
    for range in accept.split(',') {
        let mut params = range.split(';').map(str::trim);
        let media = params.next().unwrap_or_default().to_ascii_lowercase();
        let q = params
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    openmetrics > 0.0 && openmetrics >= text
}

/// An OpenMetrics exposition in the Prometheus text format 0.0.4: counter families are named
/// with `_total` in `# HELP`/`# TYPE`, their `_created` samples are left out, `unknown`
/// becomes `untyped`, and `# UNIT`/`# EOF` go.
pub fn to_text_format(openmetrics: &str) -> String {
    let lines: Vec<&str> = openmetrics.lines().collect();
    let mut out = String::with_capacity(openmetrics.len());
    // The counter family being written, to leave out its `_created` samples.
    let mut counter: Option<&str> = None;
    for (i, line) in lines.iter().enumerate() {
        if *line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let is_counter = lines
                .get(i + 1)
                .is_some_and(|next| *next == format!("# TYPE {name} counter"));
            let suffix = if is_counter { "_total" } else { "" };
            out.push_str(&format!("# HELP {name}{suffix} {help}\n"));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            counter = (kind == "counter").then_some(name);
            match kind {
                "counter" => out.push_str(&format!("# TYPE {name}_total counter\n")),
                "unknown" => out.push_str(&format!("# TYPE {name} untyped\n")),
                _ => out.push_str(&format!("{line}\n")),
            }
            continue;
        }
        if let Some(family) = counter
            && line
                .strip_prefix(family)
                .is_some_and(|rest| rest.starts_with("_created"))
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The `/metrics` response for `openmetrics` in the format the request's `Accept` asks for.
pub fn response(request: &HeaderMap, openmetrics: String) -> Response {
    let accept = request.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = if wants_openmetrics(accept) {
        (OPENMETRICS, openmetrics)
    } else {
        (TEXT_FORMAT, to_text_format(&openmetrics))
    };
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENMETRICS_SAMPLE: &str = "\
# HELP orca_x_reports Reports received.
# TYPE orca_x_reports counter
orca_x_reports_total{result=\"applied\"} 3
orca_x_reports_created{result=\"applied\"} 1700000000.0
# HELP orca_x_agents Agents reporting.
# TYPE orca_x_agents gauge
# UNIT orca_x_agents agents
orca_x_agents 2
# HELP orca_x_seconds Time.
# TYPE orca_x_seconds histogram
orca_x_seconds_sum 0.5
orca_x_seconds_count 1
orca_x_seconds_bucket{le=\"+Inf\"} 1
# EOF
";

    #[test]
    fn counters_are_named_with_total_in_the_text_format() {
        let text = to_text_format(OPENMETRICS_SAMPLE);
        assert_eq!(
            text,
            "\
# HELP orca_x_reports_total Reports received.
# TYPE orca_x_reports_total counter
orca_x_reports_total{result=\"applied\"} 3
# HELP orca_x_agents Agents reporting.
# TYPE orca_x_agents gauge
orca_x_agents 2
# HELP orca_x_seconds Time.
# TYPE orca_x_seconds histogram
orca_x_seconds_sum 0.5
orca_x_seconds_count 1
orca_x_seconds_bucket{le=\"+Inf\"} 1
"
        );
    }

    #[test]
    fn prometheus_gets_openmetrics_and_curl_the_text_format() {
        // What Prometheus 2.x sends.
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
             version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some(
            "text/plain;version=0.0.4,application/openmetrics-text;q=0.5"
        )));
    }

    #[test]
    fn joined_expositions_end_once() {
        let joined = join(["a 1\n# EOF\n", "b 2\n# EOF", ""]);
        assert_eq!(joined, "a 1\nb 2\n# EOF\n");
    }
}
