//! Redaction: secrets are removed from everything that leaves the cluster in a prompt.
//!
//! Alerts carry whatever exporters and rule authors put in them: URLs with credentials, tokens
//! in label values, a PEM block pasted into an annotation. Before any text goes into a prompt it
//! passes through a [`Redactor`]: built-in patterns (bearer tokens, `Authorization` values,
//! `sk-…`/`AKIA…`/GitHub/Slack/Google keys, JWTs, `api_key=…`-style pairs, passwords in URLs,
//! PEM private keys) plus configurable ones.

use std::borrow::Cow;

use regex::{Regex, RegexBuilder};
use serde_json::Value;

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Largest compiled size of one redaction pattern.
const MAX_PATTERN_BYTES: usize = 1 << 20;

/// Built-in patterns, in order, with their replacements. Order matters: whole PEM blocks and
/// URL credentials go first so later, narrower patterns do not cut them in half.
const DEFAULT_PATTERNS: &[(&str, &str)] = &[
    (
        r"-----BEGIN[ A-Z0-9]*PRIVATE KEY-----[\s\S]*?(?:-----END[ A-Z0-9]*PRIVATE KEY-----|\z)",
        "[REDACTED PRIVATE KEY]",
    ),
    (
        r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/@:]+:[^\s/@]+@",
        "${1}[REDACTED]@",
    ),
    (
        r#"(?i)\b(authorization["']?\s*[:=]\s*["']?)(?:[a-z]+\s+)?[^\s"',;]+"#,
        "${1}[REDACTED]",
    ),
    (
        r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]{8,}=*",
        "${1} [REDACTED]",
    ),
    (
        r#"(?i)\b((?:api[_\-]?key|apikey|access[_\-]?key(?:[_\-]?id)?|secret[_\-]?(?:access[_\-]?)?key|client[_\-]?secret|access[_\-]?token|auth[_\-]?token|refresh[_\-]?token|token|secret|password|passwd|pwd)["']?\s*[=:]\s*["']?)[^\s"'&,;]+"#,
        "${1}[REDACTED]",
    ),
    (r"\bsk-[A-Za-z0-9_\-]{16,}", REDACTED),
    (
        r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}\b",
        REDACTED,
    ),
    (
        r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})",
        REDACTED,
    ),
    (r"\bxox[abposr]-[A-Za-z0-9\-]{10,}", REDACTED),
    (r"\bAIza[0-9A-Za-z_\-]{35}", REDACTED),
    (
        r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
        REDACTED,
    ),
];

/// Which patterns redact.
#[derive(Debug, Clone)]
pub struct RedactionConfig {
    /// Use the built-in patterns (default true).
    pub defaults: bool,
    /// Extra regular expressions; each match is replaced by `[REDACTED]`.
    pub extra_patterns: Vec<String>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        Self {
            defaults: true,
            extra_patterns: Vec::new(),
        }
    }
}

/// A configured pattern does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redaction pattern {pattern:?} does not compile: {message}")]
pub struct RedactionError {
    /// The pattern as configured.
    pub pattern: String,
    /// What the regex compiler said.
    pub message: String,
}

/// Applies the redaction patterns.
#[derive(Debug, Clone)]
pub struct Redactor {
    rules: Vec<(Regex, String)>,
}

impl Redactor {
    /// Compiles the configured patterns.
    pub fn new(config: &RedactionConfig) -> Result<Self, RedactionError> {
        let mut rules = Vec::new();
        if config.defaults {
            for (p, r) in DEFAULT_PATTERNS {
                rules.push((compile(p)?, (*r).to_owned()));
            }
        }
        for p in &config.extra_patterns {
            rules.push((compile(p)?, REDACTED.to_owned()));
        }
        Ok(Self { rules })
    }

    /// The built-in patterns only.
    pub fn with_defaults() -> Result<Self, RedactionError> {
        Self::new(&RedactionConfig::default())
    }

    /// `s` with every secret replaced.
    pub fn redact<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(s);
        for (re, replacement) in &self.rules {
            if let Cow::Owned(changed) = re.replace_all(&out, replacement.as_str()) {
                out = Cow::Owned(changed);
            }
        }
        out
    }

    /// Redacts every string (keys and values) inside `value`.
    pub fn redact_json(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                if let Cow::Owned(r) = self.redact(s) {
                    *s = r;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    self.redact_json(&mut v);
                    map.insert(self.redact(&k).into_owned(), v);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

fn compile(pattern: &str) -> Result<Regex, RedactionError> {
    RegexBuilder::new(pattern)
        .size_limit(MAX_PATTERN_BYTES)
        .build()
        .map_err(|e| RedactionError {
            pattern: pattern.to_owned(),
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
    use serde_json::json;

    fn r(s: &str) -> String {
        Redactor::with_defaults()
            .expect("defaults compile")
            .redact(s)
            .into_owned()
    }

    #[test]
    fn bearer_tokens_are_redacted() {
        assert_eq!(
            r("curl -H 'Authorization: Bearer abc.def-123456'"),
            "curl -H 'Authorization: [REDACTED]'"
        );
        assert_eq!(
            r("token was Bearer eyJhbGciOiJIUzI1NiJ9xyz"),
            "token was Bearer [REDACTED]"
        );
        assert_eq!(r("the bearer of bad news"), "the bearer of bad news");
    }

    #[test]
    fn api_keys_are_redacted() {
        assert_eq!(
            r("key sk-proj-AbCdEf0123456789xyzXYZ used"),
            "key [REDACTED] used"
        );
        assert_eq!(r("aws AKIAIOSFODNN7EXAMPLE here"), "aws [REDACTED] here");
        assert_eq!(
            r("https://x/api?api_key=s3cr3t&q=1"),
            "https://x/api?api_key=[REDACTED]&q=1"
        );
        assert_eq!(r("API-KEY: 12345abcdef"), "API-KEY: [REDACTED]");
        assert_eq!(
            r("password=hunter2 user=bob"),
            "password=[REDACTED] user=bob"
        );
        assert_eq!(
            r(r#"{"client_secret": "abc"}"#),
            r#"{"client_secret": "[REDACTED]"}"#
        );
        assert_eq!(
            r("gh token ghp_0123456789abcdefghij0123456789abcdef"),
            "gh token [REDACTED]"
        );
    }

    #[test]
    fn ordinary_words_survive() {
        for s in [
            "tokens: 5 used",
            "the secret sauce",
            "password reset failed for 3 users",
            "sk-short",
        ] {
            assert_eq!(r(s), s);
        }
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            r("probe https://admin:pa55@db.internal:5432/x failed"),
            "probe https://[REDACTED]@db.internal:5432/x failed"
        );
        assert_eq!(
            r("postgres://app:s3cret@10.0.0.5/db"),
            "postgres://[REDACTED]@10.0.0.5/db"
        );
        assert_eq!(
            r("https://db.internal:5432/x"),
            "https://db.internal:5432/x"
        );
    }

    #[test]
    fn private_keys_are_redacted_even_when_cut_off() {
        let pem = "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nabc\n-----END RSA PRIVATE KEY-----\nafter";
        assert_eq!(r(pem), "key:\n[REDACTED PRIVATE KEY]\nafter");
        let cut = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA…[truncated]";
        assert_eq!(r(cut), "[REDACTED PRIVATE KEY]");
    }

    #[test]
    fn extra_patterns_are_applied_and_bad_ones_refused() {
        let red = Redactor::new(&RedactionConfig {
            defaults: false,
            extra_patterns: vec!["corp-[0-9]{4}".into()],
        })
        .expect("compiles");
        assert_eq!(
            red.redact("ticket corp-1234 sk-proj-AbCdEf0123456789xyz"),
            "ticket [REDACTED] sk-proj-AbCdEf0123456789xyz"
        );
        let err = Redactor::new(&RedactionConfig {
            defaults: true,
            extra_patterns: vec!["(".into()],
        })
        .expect_err("bad");
        assert!(
            err.to_string()
                .starts_with("redaction pattern \"(\" does not compile"),
            "{err}"
        );
    }

    #[test]
    fn json_keys_and_nested_values_are_redacted() {
        let red = Redactor::with_defaults().expect("defaults");
        let mut v = json!({"a": ["password=x1"], "token=abc": {"n": 1, "s": "Bearer abcdefghijk"}});
        red.redact_json(&mut v);
        assert_eq!(
            v,
            json!({"a": ["password=[REDACTED]"], "token=[REDACTED]": {"n": 1, "s": "Bearer [REDACTED]"}})
        );
    }
}
