//! The step's URL: its templates filled in (percent-encoded after the host) and the checks that
//! keep the request going where the definition says.

use reqwest::Url;

use crate::workflow::display::display_url;
use crate::workflow::template::{embedded_templates, fill_templates, Arg};

/// Stands for `{{ server.url }}` when a templated URL is checked at load.
const SERVER_URL_PLACEHOLDER: &str = "http://localhost";
/// Stands for any other template when a templated URL is checked at load.
const VALUE_PLACEHOLDER: &str = "x";

/// Checks a URL that may embed templates (see [`HttpSpec::parse`](super::HttpSpec::parse)).
pub(super) fn check_url_text(text: &str) -> Result<(), String> {
    if embedded_templates(text).next().is_none() {
        return check_url(text);
    }
    let base_end = url_base_end(text)?;
    let (base, rest) = text.split_at(base_end);
    let placeholder = |arg: &Arg| {
        Ok(match arg {
            Arg::ServerUrl => SERVER_URL_PLACEHOLDER.to_owned(),
            _ => VALUE_PLACEHOLDER.to_owned(),
        })
    };
    let base = fill_templates(base, placeholder)?;
    let rest = fill_templates(rest, |_| Ok(VALUE_PLACEHOLDER.to_owned()))?;
    check_url(&format!("{base}{rest}"))
}

/// Where the base of a URL with templates ends: after a leading `{{ server.url }}`, or after the
/// literal scheme and host. Any other template must come after it, so none can choose the scheme,
/// the host or the credentials.
fn url_base_end(text: &str) -> Result<usize, String> {
    let mut templates = embedded_templates(text).peekable();
    let end = match templates.peek() {
        Some((range, "server.url")) if range.start == 0 => {
            let end = range.end;
            templates.next();
            let rest = &text[end..];
            if !(rest.is_empty() || rest.starts_with(['/', '?', '#'])) {
                return Err(
                    "after {{ server.url }} comes a path (/...), a query (?...), a fragment (#...) or nothing"
                        .to_owned(),
                );
            }
            end
        }
        _ => {
            let scheme = ["http://", "https://"]
                .into_iter()
                .find(|scheme| {
                    text.get(..scheme.len())
                        .is_some_and(|start| start.eq_ignore_ascii_case(scheme))
                })
                .ok_or(
                    "a URL with templates must start with http://, https:// or {{ server.url }}",
                )?;
            // The WHATWG URL parser ends the host at any of these (`\` too, for http and https).
            let end = text[scheme.len()..]
                .find(['/', '?', '#', '\\'])
                .map_or(text.len(), |i| i + scheme.len());
            // `http:///{{ x }}`: the parser would take the host from what follows the slashes.
            if end == scheme.len() {
                return Err("a URL with templates needs a literal host".to_owned());
            }
            end
        }
    };
    if templates.any(|(range, _)| range.start < end) {
        return Err(
            "templates may only come after the host (in the path, query or fragment); the scheme and host are literal or {{ server.url }}"
                .to_owned(),
        );
    }
    Ok(end)
}

/// A URL with its templates filled in (see [`HttpSpec::render`](super::HttpSpec::render)).
pub(super) fn render_url(
    text: &str,
    value: &impl Fn(&Arg) -> Result<String, String>,
) -> Result<String, String> {
    if embedded_templates(text).next().is_none() {
        return Ok(text.to_owned());
    }
    let (base_text, rest_text) = text.split_at(url_base_end(text)?);
    let base = fill_templates(base_text, value)?;
    let rest = fill_templates(rest_text, |arg| Ok(percent_encode(&value(arg)?)))?;
    let url = format!("{base}{rest}");
    let shown = display_url(&url);
    // A path segment of dots would be resolved away by the URL parser (`/a/../b` is `/b`): the
    // path sent must be the path written.
    if let Some(segment) = dot_segment(&url) {
        return Err(format!(
            "the path has a '{segment}' segment after templates, which would be read as a relative path ({shown})"
        ));
    }
    check_url(&url).map_err(|e| format!("{e} (after templates: {shown})"))?;
    // Belt and braces: whatever the values were, the origin and credentials are the base's.
    let inert = fill_templates(rest_text, |_| Ok(VALUE_PLACEHOLDER.to_owned()))?;
    let same = match (Url::parse(&url), Url::parse(&format!("{base}{inert}"))) {
        (Ok(got), Ok(want)) => {
            got.origin() == want.origin()
                && got.username() == want.username()
                && got.password() == want.password()
        }
        _ => false,
    };
    if !same {
        return Err(format!(
            "the templates changed where the request goes ({shown})"
        ));
    }
    Ok(url)
}

/// The first path segment of `url` that a URL parser reads as `.` or `..` (also percent-encoded).
fn dot_segment(url: &str) -> Option<&str> {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path_start = after_scheme.find('/')?;
    let path = &after_scheme[path_start..];
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    path.split('/').find(|segment| {
        let lower = segment.to_ascii_lowercase().replace("%2e", ".");
        lower == "." || lower == ".."
    })
}

/// Every byte but the unreserved ones (RFC 3986: `A-Z a-z 0-9 - . _ ~`) as `%XX`.
pub(super) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn check_url(text: &str) -> Result<(), String> {
    let url = Url::parse(text).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "only http and https URLs are allowed, not {}:",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{templated, values};
    use super::super::HttpSpec;
    use super::*;

    #[test]
    fn parse_allows_url_templates_only_after_the_host() {
        for url in [
            "{{ server.url }}",
            "{{server.url}}/health",
            "{{ server.url }}?q={{ parameters.name }}",
            "http://127.0.0.1:8080/files/{{ parameters.name }}",
            "HTTPS://example.com?next={{ server.url }}#{{ steps.a.output }}",
        ] {
            assert!(
                HttpSpec::parse(&json!({ "url": url })).is_ok(),
                "{url} is allowed"
            );
        }
        for (url, want) in [
            (
                "{{ parameters.name }}/x",
                "must start with http://, https:// or {{ server.url }}",
            ),
            (
                "ftp://example.com/{{ parameters.name }}",
                "must start with http://",
            ),
            ("/health{{ server.url }}", "must start with http://"),
            (
                "http://{{ parameters.name }}/x",
                "templates may only come after the host",
            ),
            (
                "http://example.com{{ parameters.name }}/x",
                "templates may only come after the host",
            ),
            (
                "https://user:{{ parameters.name }}@example.com/",
                "templates may only come after the host",
            ),
            (
                "http://example.com:{{ parameters.name }}/",
                "templates may only come after the host",
            ),
            (
                "{{ server.url }}:9/x",
                "after {{ server.url }} comes a path",
            ),
            (
                "{{ server.url }}.evil.com/x",
                "after {{ server.url }} comes a path",
            ),
            ("http:///{{ parameters.name }}", "needs a literal host"),
            (
                "http://exa mple.com/{{ parameters.name }}",
                "not a valid URL",
            ),
        ] {
            let problems = HttpSpec::parse(&json!({ "url": url })).unwrap_err();
            assert!(
                problems[0].starts_with("http.url: ") && problems[0].contains(want),
                "{url}: {problems:?}"
            );
        }
    }

    #[test]
    fn url_values_are_percent_encoded_and_the_server_url_is_not() {
        let spec =
            templated("http://127.0.0.1:8080/files/{{ parameters.name }}?v={{parameters.name}}");
        let rendered = spec.render(values("../x?y=1#z@evil.com", "")).unwrap();
        assert_eq!(
            rendered.url,
            "http://127.0.0.1:8080/files/..%2Fx%3Fy%3D1%23z%40evil.com?v=..%2Fx%3Fy%3D1%23z%40evil.com"
        );
        let url = Url::parse(&rendered.url).unwrap();
        assert_eq!(url.host_str(), Some("127.0.0.1"));
        assert_eq!(url.fragment(), None);

        let spec =
            templated("{{ server.url }}/health?back={{ server.url }}&n={{ parameters.name }}");
        let rendered = spec.render(values("a b/é%", "http://[::1]:4321")).unwrap();
        assert_eq!(
            rendered.url,
            "http://[::1]:4321/health?back=http%3A%2F%2F%5B%3A%3A1%5D%3A4321&n=a%20b%2F%C3%A9%25"
        );
        // A literal URL is left alone.
        let spec = templated("http://example.com/a%20b?c=d");
        assert_eq!(spec.render(values("", "")).unwrap().url, spec.url);
    }

    #[test]
    fn a_url_that_templates_make_invalid_fails_to_render() {
        let spec = templated("http://example.com/files/{{ parameters.name }}/delete");
        for dots in [".", ".."] {
            let error = spec.render(values(dots, "")).unwrap_err();
            assert!(
                error.starts_with("http.url: the path has a '")
                    && error.contains("read as a relative path"),
                "{error}"
            );
        }
        // A value cannot spell an encoded dot: its `%` is encoded in turn.
        assert_eq!(
            spec.render(values("%2E", "")).unwrap().url,
            "http://example.com/files/%252E/delete"
        );
        // Dots made of several values, or around an empty one, are caught the same way.
        let spec =
            templated("http://example.com/files/{{ parameters.name }}.{{ parameters.name }}/x");
        let error = spec.render(values("", "")).unwrap_err();
        assert!(error.contains("read as a relative path"), "{error}");
        // Dots in the query are not a path: allowed.
        let spec = templated("http://example.com/files?v={{ parameters.name }}");
        assert_eq!(
            spec.render(values("..", "")).unwrap().url,
            "http://example.com/files?v=.."
        );
        // A server URL that is not one (cannot happen with a real server) is caught, not sent.
        let spec = templated("{{ server.url }}/health");
        let error = spec.render(values("", "not a url")).unwrap_err();
        assert!(error.starts_with("http.url: not a valid URL"), "{error}");
        let error = spec.render(values("", "ftp://h")).unwrap_err();
        assert!(error.contains("only http and https"), "{error}");
        // A value that cannot be found fails too.
        let spec = templated("http://example.com/{{ steps.a.output }}");
        let error = spec.render(values("", "")).unwrap_err();
        assert_eq!(error, "http.url: {{ steps.a.output }} is not set");
    }
}
