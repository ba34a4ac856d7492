//! Alertmanager-style matching: which catalog entries are candidates for an alert.
//!
//! An entry's `match` selects an alert when the alert's name is one of `alertnames` (or the list
//! is empty) and every label matcher holds. As in Alertmanager, a missing label matches as the
//! empty string and regular expressions are anchored at both ends.

use regex::{Regex, RegexBuilder};
use salve_api::{AlertSnapshot, MatchOperator, MatchSpec};

/// Largest compiled size of one matcher regex; bigger ones are refused as invalid.
const MAX_REGEX_BYTES: usize = 1 << 20;

/// Why a `match` cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    /// The label name is not a Prometheus label name.
    #[error("matchers[{index}]: {label:?} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)")]
    InvalidLabel {
        /// Position of the matcher in `match.matchers`.
        index: usize,
        /// The label name as written.
        label: String,
    },
    /// The value of a `=~` or `!~` matcher is not a regular expression.
    #[error("matchers[{index}] on label {label:?}: invalid regular expression: {message}")]
    InvalidRegex {
        /// Position of the matcher in `match.matchers`.
        index: usize,
        /// The label the matcher tests.
        label: String,
        /// What the regex compiler said.
        message: String,
    },
}

/// A compiled `match`: cheap to evaluate against many alerts.
#[derive(Debug, Clone)]
pub struct CompiledMatch {
    alertnames: Vec<String>,
    matchers: Vec<CompiledMatcher>,
}

#[derive(Debug, Clone)]
struct CompiledMatcher {
    label: String,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Equal(String),
    NotEqual(String),
    Regex(Regex),
    NotRegex(Regex),
}

impl CompiledMatch {
    /// Compiles `spec`, checking label names and anchoring regexes.
    pub fn compile(spec: &MatchSpec) -> Result<Self, MatcherError> {
        let mut matchers = Vec::with_capacity(spec.matchers.len());
        for (index, m) in spec.matchers.iter().enumerate() {
            if !is_label_name(&m.label) {
                return Err(MatcherError::InvalidLabel {
                    index,
                    label: m.label.clone(),
                });
            }
            let test = match m.operator {
                MatchOperator::Equal => Test::Equal(m.value.clone()),
                MatchOperator::NotEqual => Test::NotEqual(m.value.clone()),
                MatchOperator::Regex => Test::Regex(anchored(index, &m.label, &m.value)?),
                MatchOperator::NotRegex => Test::NotRegex(anchored(index, &m.label, &m.value)?),
            };
            matchers.push(CompiledMatcher {
                label: m.label.clone(),
                test,
            });
        }
        Ok(Self {
            alertnames: spec.alertnames.clone(),
            matchers,
        })
    }

    /// Whether this `match` selects `alert`.
    pub fn selects(&self, alert: &AlertSnapshot) -> bool {
        if !self.alertnames.is_empty() && !self.alertnames.contains(&alert.name) {
            return false;
        }
        self.matchers.iter().all(|m| {
            let value = label_value(alert, &m.label);
            match &m.test {
                Test::Equal(v) => value == v,
                Test::NotEqual(v) => value != v,
                Test::Regex(re) => re.is_match(value),
                Test::NotRegex(re) => !re.is_match(value),
            }
        })
    }
}

/// The value of label `name` on `alert`, `""` when missing (Alertmanager semantics). The
/// alert's name stands in for a missing `alertname` label.
pub fn label_value<'a>(alert: &'a AlertSnapshot, name: &str) -> &'a str {
    match alert.labels.get(name) {
        Some(v) => v,
        None if name == "alertname" => &alert.name,
        None => "",
    }
}

/// Whether `s` is a valid Prometheus label name.
pub fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn anchored(index: usize, label: &str, value: &str) -> Result<Regex, MatcherError> {
    RegexBuilder::new(&format!("^(?:{value})$"))
        .size_limit(MAX_REGEX_BYTES)
        .build()
        .map_err(|e| MatcherError::InvalidRegex {
            index,
            label: label.to_owned(),
            // The regex crate's messages span lines; status messages read better on one.
            message: e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::alert;
    use salve_api::LabelMatcher;

    fn spec(alertnames: &[&str], matchers: &[(&str, MatchOperator, &str)]) -> MatchSpec {
        MatchSpec {
            alertnames: alertnames.iter().map(|s| s.to_string()).collect(),
            matchers: matchers
                .iter()
                .map(|(l, o, v)| LabelMatcher {
                    label: l.to_string(),
                    operator: *o,
                    value: v.to_string(),
                })
                .collect(),
        }
    }

    fn selects(s: &MatchSpec, labels: &[(&str, &str)]) -> bool {
        CompiledMatch::compile(s)
            .expect("compiles")
            .selects(&alert("HighDiskUsage", labels, &[]))
    }

    #[test]
    fn an_empty_match_selects_every_alert() {
        assert!(selects(&spec(&[], &[]), &[]));
    }

    #[test]
    fn alertnames_restrict_by_the_alerts_name() {
        assert!(selects(&spec(&["Other", "HighDiskUsage"], &[]), &[]));
        assert!(!selects(&spec(&["Other"], &[]), &[]));
    }

    #[test]
    fn equality_matchers_compare_exactly() {
        let s = spec(&[], &[("severity", MatchOperator::Equal, "critical")]);
        assert!(selects(&s, &[("severity", "critical")]));
        assert!(!selects(&s, &[("severity", "Critical")]));
        let s = spec(&[], &[("severity", MatchOperator::NotEqual, "info")]);
        assert!(selects(&s, &[("severity", "critical")]));
        assert!(!selects(&s, &[("severity", "info")]));
    }

    #[test]
    fn regex_matchers_are_anchored_at_both_ends() {
        let s = spec(
            &[],
            &[("instance", MatchOperator::Regex, "web-[0-9]+:9100")],
        );
        assert!(selects(&s, &[("instance", "web-3:9100")]));
        assert!(!selects(&s, &[("instance", "xweb-3:9100")]));
        assert!(!selects(&s, &[("instance", "web-3:9100x")]));
        let s = spec(&[], &[("instance", MatchOperator::Regex, "a|b")]);
        assert!(selects(&s, &[("instance", "b")]));
        assert!(!selects(&s, &[("instance", "ab")]));
        let s = spec(&[], &[("env", MatchOperator::NotRegex, "prod.*")]);
        assert!(selects(&s, &[("env", "staging")]));
        assert!(!selects(&s, &[("env", "production")]));
    }

    #[test]
    fn a_missing_label_matches_as_the_empty_string() {
        assert!(selects(
            &spec(&[], &[("team", MatchOperator::Equal, "")]),
            &[]
        ));
        assert!(!selects(
            &spec(&[], &[("team", MatchOperator::NotEqual, "")]),
            &[]
        ));
        assert!(selects(
            &spec(&[], &[("team", MatchOperator::Regex, "(ops)?")]),
            &[]
        ));
        assert!(selects(
            &spec(&[], &[("team", MatchOperator::NotRegex, ".+")]),
            &[]
        ));
        assert!(!selects(
            &spec(&[], &[("team", MatchOperator::Regex, "ops")]),
            &[]
        ));
    }

    #[test]
    fn all_matchers_must_hold() {
        let s = spec(
            &["HighDiskUsage"],
            &[
                ("severity", MatchOperator::Equal, "warning"),
                ("job", MatchOperator::Equal, "node"),
            ],
        );
        assert!(selects(&s, &[("severity", "warning"), ("job", "node")]));
        assert!(!selects(
            &s,
            &[("severity", "warning"), ("job", "blackbox")]
        ));
    }

    #[test]
    fn the_alertname_label_falls_back_to_the_alerts_name() {
        let s = spec(&[], &[("alertname", MatchOperator::Regex, "High.*")]);
        let mut a = alert("HighDiskUsage", &[], &[]);
        a.labels.remove("alertname");
        assert!(CompiledMatch::compile(&s).expect("compiles").selects(&a));
    }

    #[test]
    fn invalid_regexes_and_label_names_are_refused_with_their_position() {
        let err = CompiledMatch::compile(&spec(
            &[],
            &[
                ("a", MatchOperator::Equal, "x"),
                ("b", MatchOperator::Regex, "("),
            ],
        ))
        .expect_err("invalid regex");
        assert!(
            matches!(err, MatcherError::InvalidRegex { index: 1, .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("matchers[1] on label \"b\": invalid regular expression"),
            "{err}"
        );
        let err = CompiledMatch::compile(&spec(&[], &[("1bad-label", MatchOperator::Equal, "x")]))
            .expect_err("bad label");
        assert!(
            matches!(err, MatcherError::InvalidLabel { index: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn oversized_regexes_are_refused() {
        let huge = r"(?:\w{100}){100}";
        let err = CompiledMatch::compile(&spec(&[], &[("x", MatchOperator::Regex, huge)]))
            .expect_err("too big");
        assert!(matches!(err, MatcherError::InvalidRegex { .. }), "{err}");
    }
}
