//! Decision metrics (prometheus-client), registered under the `salve_decide` prefix.
//!
//! | metric | labels | meaning |
//! | --- | --- | --- |
//! | `salve_decide_decisions_total` | source, outcome | decisions made, by who made them and what came of it |
//! | `salve_decide_llm_latency_seconds` | | time of the whole LLM exchange of one decision (retries and mode fallbacks included) |
//! | `salve_decide_llm_requests_total` | mode, status | HTTP requests to the LLM endpoint, by response mode and status (`200`, `429`, `timeout`…) |
//! | `salve_decide_llm_tokens_total` | kind | tokens the server reported, `prompt` or `completion` |
//! | `salve_decide_invalid_answers_total` | reason | answers refused by validation, by refusal code |
//! | `salve_decide_budget_used_tokens` | | tokens used or reserved in the rolling 24 hours |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    source: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    mode: &'static str,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The engine's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    decisions: Family<DecisionLabels, Counter>,
    llm_latency: Histogram,
    llm_requests: Family<RequestLabels, Counter>,
    llm_tokens: Family<KindLabels, Counter>,
    invalid_answers: Family<ReasonLabels, Counter>,
    budget_used: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them into `registry` under `salve_decide_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            decisions: Family::default(),
            llm_latency: Histogram::new(exponential_buckets(0.05, 2.0, 12)),
            llm_requests: Family::default(),
            llm_tokens: Family::default(),
            invalid_answers: Family::default(),
            budget_used: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("salve_decide");
        r.register(
            "decisions",
            "Decisions made, by source (rules|llm) and outcome",
            m.decisions.clone(),
        );
        r.register(
            "llm_latency_seconds",
            "Duration of the LLM exchange of one decision, retries and mode fallbacks included",
            m.llm_latency.clone(),
        );
        r.register(
            "llm_requests",
            "HTTP requests to the LLM endpoint, by response mode and status",
            m.llm_requests.clone(),
        );
        r.register(
            "llm_tokens",
            "Tokens reported by the LLM endpoint, by kind (prompt|completion)",
            m.llm_tokens.clone(),
        );
        r.register(
            "invalid_answers",
            "LLM answers refused by validation, by reason",
            m.invalid_answers.clone(),
        );
        r.register(
            "budget_used_tokens",
            "Tokens used or reserved in the rolling 24-hour budget window",
            m.budget_used.clone(),
        );
        m
    }

    pub(crate) fn decision(&self, source: &'static str, outcome: &'static str) {
        self.decisions
            .get_or_create(&DecisionLabels { source, outcome })
            .inc();
    }

    pub(crate) fn llm_latency(&self, seconds: f64) {
        self.llm_latency.observe(seconds);
    }

    pub(crate) fn llm_request(&self, mode: &'static str, status: String) {
        self.llm_requests
            .get_or_create(&RequestLabels { mode, status })
            .inc();
    }

    pub(crate) fn tokens(&self, prompt: u64, completion: u64) {
        self.llm_tokens
            .get_or_create(&KindLabels { kind: "prompt" })
            .inc_by(prompt);
        self.llm_tokens
            .get_or_create(&KindLabels { kind: "completion" })
            .inc_by(completion);
    }

    pub(crate) fn invalid_answer(&self, reason: &'static str) {
        self.invalid_answers
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub(crate) fn budget_used(&self, tokens: u64) {
        self.budget_used
            .set(i64::try_from(tokens).unwrap_or(i64::MAX));
    }
}
