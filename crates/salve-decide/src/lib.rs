//! salve's decision engine: from a firing alert and the reviewed PlaybookCatalogs to one
//! audited [`salve_api::Decision`]. The LLM only ever *selects*; it never writes commands.
//!
//! The steps, one module each:
//! 1. [`hygiene`]: [`check_catalogs`] compiles every entry once (schema, matchers, templates),
//!    leaves broken or colliding entries out and reports them as `EntryProblem`s.
//! 2. [`matching`]: the *candidates* are the valid entries whose `match` selects the alert; only
//!    they reach a prompt, so prompts stay small as catalogs grow.
//! 3. [`rules`] (with [`template`]): one candidate whose `paramsFromLabels` fill its params is
//!    decided without an LLM (`source: rules`).
//! 4. [`prompt`], [`redact`], [`schema`]: otherwise a redacted prompt with the alert as a fenced
//!    data block, and an answer schema with one typed branch per candidate plus `escalate`.
//! 5. [`llm`]: the OpenAI-compatible call through async-openai: response-mode fallback
//!    remembered per endpoint, timeouts, jittered retries, a concurrency limit.
//! 6. [`validate`]: every answer is checked against the candidates, their schemas and the alert;
//!    anything else escalates with the exact reason.
//!
//! [`budget`] caps tokens per day, [`metrics`] exports prometheus-client metrics, and [`engine`]
//! ties the steps together in [`DecisionEngine`]. Everything but `llm` and `engine` is pure: no
//! I/O, no clock. With the `testing` feature, [`testing`] offers fixtures and a scripted
//! OpenAI-compatible server for tests.
#![forbid(unsafe_code)]

pub mod budget;
pub mod engine;
pub mod hygiene;
pub mod llm;
pub mod matching;
pub mod metrics;
pub mod prompt;
pub mod redact;
pub mod rules;
pub mod schema;
pub mod template;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod validate;

pub use engine::{ConfigError, DecideConfig, DecisionEngine, Outcome, OutcomeKind};
pub use hygiene::{CatalogCheck, CatalogReport, ValidEntry, check_catalogs};
pub use llm::{LlmConfig, ResponseMode};
pub use prompt::PromptLimits;
pub use redact::RedactionConfig;
pub use validate::{Refusal, RefusalCode};

/// `s` cut to at most `max_bytes` bytes on a character boundary, with `…` marking a cut.
pub(crate) fn truncate(s: &str, max_bytes: usize) -> String {
    if s.len() <= max_bytes {
        return s.to_owned();
    }
    const MARK: &str = "…";
    let mut end = max_bytes.saturating_sub(MARK.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncation_respects_char_boundaries_and_the_byte_limit() {
        assert_eq!(truncate("short", 10), "short");
        let t = truncate("ééééé", 6);
        assert!(t.len() <= 6, "{t}");
        assert_eq!(t, "é…");
        assert!(truncate(&"x".repeat(5000), 4096).len() <= 4096);
    }

    #[test]
    fn the_engine_and_reports_can_be_shared_across_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::DecisionEngine>();
        assert_send_sync::<super::CatalogReport>();
    }
}
