//! `paramsFromLabels` templates: how the rules fast path fills params from the alert.
//!
//! A template is literal text with placeholders `{{ labels.NAME }}` or `{{ annotations.NAME }}`,
//! each optionally filtered by `| host`, which keeps the host of an `instance`-style value
//! (`web-3:9100` → `web-3`, `[::1]:9100` → `::1`, `https://u@h:8443/x` → `h`). Nothing else is
//! accepted, so a template can only copy alert data, never compute.

use salve_api::AlertSnapshot;

use crate::matching::is_label_name;

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{{` without a matching `}}`.
    #[error("unclosed '{{{{' at byte {at}")]
    Unclosed {
        /// Byte offset of the `{{`.
        at: usize,
    },
    /// `}}` outside a placeholder.
    #[error("unexpected '}}}}' at byte {at}")]
    StrayClose {
        /// Byte offset of the `}}`.
        at: usize,
    },
    /// A placeholder that is not `labels.NAME` or `annotations.NAME`.
    #[error("{expr:?}: expected labels.NAME or annotations.NAME")]
    BadField {
        /// The placeholder's content.
        expr: String,
    },
    /// A filter other than `host`.
    #[error("{expr:?}: unknown filter {filter:?} (only 'host' exists)")]
    UnknownFilter {
        /// The placeholder's content.
        expr: String,
        /// The filter as written.
        filter: String,
    },
}

/// Where a placeholder reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The alert's labels.
    Labels,
    /// The alert's annotations.
    Annotations,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field {
        source: Source,
        name: String,
        host: bool,
    },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        loop {
            let open = rest.find("{{");
            let close = rest.find("}}");
            match (open, close) {
                (_, Some(c)) if open.is_none_or(|o| c < o) => {
                    return Err(TemplateError::StrayClose { at: offset + c });
                }
                (None, _) => {
                    if !rest.is_empty() {
                        parts.push(Part::Literal(rest.to_owned()));
                    }
                    return Ok(Self { parts });
                }
                (Some(o), _) => {
                    if o > 0 {
                        parts.push(Part::Literal(rest[..o].to_owned()));
                    }
                    let after = &rest[o + 2..];
                    let end = after
                        .find("}}")
                        .ok_or(TemplateError::Unclosed { at: offset + o })?;
                    parts.push(parse_field(&after[..end])?);
                    let consumed = o + 2 + end + 2;
                    offset += consumed;
                    rest = &rest[consumed..];
                }
            }
        }
    }

    /// Renders the template for `alert`; `None` when a referenced label or annotation is
    /// missing (the param then stays unfilled).
    pub fn render(&self, alert: &AlertSnapshot) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Field {
                    source,
                    name,
                    host: filter_host,
                } => {
                    let value = match source {
                        Source::Labels => alert
                            .labels
                            .get(name)
                            .map(String::as_str)
                            .or_else(|| (name == "alertname").then_some(alert.name.as_str())),
                        Source::Annotations => alert.annotations.get(name).map(String::as_str),
                    }?;
                    out.push_str(if *filter_host { host(value) } else { value });
                }
            }
        }
        Some(out)
    }
}

fn parse_field(expr: &str) -> Result<Part, TemplateError> {
    let mut pieces = expr.split('|').map(str::trim);
    let path = pieces.next().unwrap_or_default();
    let bad = || TemplateError::BadField {
        expr: expr.trim().to_owned(),
    };
    let (source, name) = path.split_once('.').ok_or_else(bad)?;
    let source = match source {
        "labels" => Source::Labels,
        "annotations" => Source::Annotations,
        _ => return Err(bad()),
    };
    if !is_label_name(name) {
        return Err(bad());
    }
    let mut host = false;
    for filter in pieces {
        match filter {
            "host" => host = true,
            other => {
                return Err(TemplateError::UnknownFilter {
                    expr: expr.trim().to_owned(),
                    filter: other.to_owned(),
                });
            }
        }
    }
    Ok(Part::Field {
        source,
        name: name.to_owned(),
        host,
    })
}

/// The host part of an `instance`-style value: drops a URL's scheme, credentials and path, and
/// a trailing `:port`; unwraps a bracketed IPv6 address. Anything else is returned as is.
pub fn host(value: &str) -> &str {
    let mut s = value;
    if let Some(i) = s.find("://") {
        s = &s[i + 3..];
        if let Some(end) = s.find(['/', '?', '#']) {
            s = &s[..end];
        }
        if let Some(at) = s.rfind('@') {
            s = &s[at + 1..];
        }
    }
    if let Some(inner) = s.strip_prefix('[')
        && let Some(end) = inner.find(']')
    {
        return &inner[..end];
    }
    match s.rsplit_once(':') {
        Some((h, port))
            if !h.contains(':') && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            h
        }
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::alert;

    fn render(t: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Option<String> {
        Template::parse(t)
            .expect("parses")
            .render(&alert("A", labels, annotations))
    }

    #[test]
    fn a_label_placeholder_copies_the_label() {
        assert_eq!(
            render("{{ labels.service }}", &[("service", "nginx")], &[]).as_deref(),
            Some("nginx")
        );
        assert_eq!(
            render("{{labels.service}}", &[("service", "nginx")], &[]).as_deref(),
            Some("nginx")
        );
    }

    #[test]
    fn the_host_filter_strips_the_port() {
        assert_eq!(
            render(
                "{{ labels.instance | host }}",
                &[("instance", "web-3:9100")],
                &[]
            )
            .as_deref(),
            Some("web-3")
        );
    }

    #[test]
    fn annotations_and_literal_text_combine() {
        let out = render(
            "{{ labels.namespace }}/{{ annotations.target }}",
            &[("namespace", "shop")],
            &[("target", "checkout")],
        );
        assert_eq!(out.as_deref(), Some("shop/checkout"));
    }

    #[test]
    fn a_missing_label_leaves_the_param_unfilled() {
        assert_eq!(render("{{ labels.service }}", &[], &[]), None);
    }

    #[test]
    fn host_handles_ports_ipv6_and_urls() {
        assert_eq!(host("web-3:9100"), "web-3");
        assert_eq!(host("web-3"), "web-3");
        assert_eq!(host("10.0.0.7:9100"), "10.0.0.7");
        assert_eq!(host("[2001:db8::1]:9100"), "2001:db8::1");
        assert_eq!(host("2001:db8::1"), "2001:db8::1");
        assert_eq!(
            host("https://user:pw@api.example.com:8443/health?x=1"),
            "api.example.com"
        );
        assert_eq!(host("http://web-3/metrics"), "web-3");
        assert_eq!(host("web-3:http"), "web-3:http");
    }

    #[test]
    fn malformed_templates_are_refused_precisely() {
        assert_eq!(
            Template::parse("{{ labels.x"),
            Err(TemplateError::Unclosed { at: 0 })
        );
        assert_eq!(
            Template::parse("a }} b"),
            Err(TemplateError::StrayClose { at: 2 })
        );
        assert!(matches!(
            Template::parse("{{ env.HOME }}"),
            Err(TemplateError::BadField { .. })
        ));
        assert!(matches!(
            Template::parse("{{ labels }}"),
            Err(TemplateError::BadField { .. })
        ));
        assert!(matches!(
            Template::parse("{{ labels.bad-name }}"),
            Err(TemplateError::BadField { .. })
        ));
        assert!(matches!(
            Template::parse("{{ labels.x | upper }}"),
            Err(TemplateError::UnknownFilter { .. })
        ));
        assert!(matches!(
            Template::parse("{{ labels.x.__class__ }}"),
            Err(TemplateError::BadField { .. })
        ));
        let err = Template::parse("{{ labels.x | shell }}").expect_err("unknown filter");
        assert_eq!(
            err.to_string(),
            "\"labels.x | shell\": unknown filter \"shell\" (only 'host' exists)"
        );
    }

    #[test]
    fn literal_only_templates_are_constants() {
        assert_eq!(render("5", &[], &[]).as_deref(), Some("5"));
    }
}
