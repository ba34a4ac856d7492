//! The LLM client: a thin async layer over async-openai's Chat Completions, hardened for the
//! OpenAI-compatible servers people actually run (OpenAI, vLLM, Ollama, LiteLLM, llama.cpp's
//! server, llama-cpp-python).
//!
//! - **Response modes.** The answer is constrained by a JSON Schema, but servers disagree on how
//!   to ask for that. The client tries, in order, OpenAI's
//!   `{"type":"json_schema","json_schema":{"name","schema","strict":true}}`, then
//!   `{"type":"json_object","schema":{…}}` (llama-cpp-python answers the first with HTTP 500 and
//!   accepts only this), then plain JSON mode `{"type":"json_object"}`. A mode is abandoned on
//!   400, 422, 500 or 501 while it has not yet worked for the endpoint; the mode that worked is
//!   remembered per endpoint, so later calls go straight to it (a weaker mode is re-probed after
//!   [`LlmConfig::mode_reprobe_after`]). Whatever the mode, the answer is validated afterwards.
//! - **Retries.** 429, 500, 502, 503, 504 and connection failures are retried at most
//!   [`LlmConfig::max_retries`] times with jittered exponential backoff (honouring
//!   `Retry-After`), all within one overall [`LlmConfig::deadline`]. Timeouts are not retried:
//!   a slow model stays slow, and the engine has a fallback.
//! - **Concurrency.** A semaphore bounds the calls in flight.
//! - **Secrets.** The API key is read from a file on every call (so a rotated Secret is picked
//!   up), sent only in the `Authorization` header, and never logged, returned or stored.
//!
//! async-openai's built-in retry layer is replaced by a tower service that turns every non-2xx
//! response into a typed error carrying its status, so the policy above sees real status codes
//! whatever error body the server sends.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::{HttpRequestFactory, ReqwestService};
use async_openai::traits::RequestOptionsBuilder;
use reqwest::header::{AUTHORIZATION, RETRY_AFTER};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::metrics::Metrics;
use crate::prompt::Prompt;
use crate::truncate;

/// Longest error body kept from the endpoint.
const MAX_ERROR_BODY: usize = 512;
/// Name of the answer schema in `json_schema` mode.
pub const SCHEMA_NAME: &str = "salve_decision";

/// Where and how to reach the model.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    /// Base URL of the OpenAI-compatible API, up to and including `/v1`
    /// (e.g. `https://api.openai.com/v1`, `http://vllm.ai.svc:8000/v1`).
    pub base_url: String,
    /// Model name as the server knows it.
    pub model: String,
    /// File holding the API key (a mounted Secret). `None`: no `Authorization` header key.
    pub api_key_file: Option<PathBuf>,
    /// Timeout of one HTTP request, body included.
    pub request_timeout: Duration,
    /// Overall time for the LLM part of one decision: queueing, mode fallbacks, retries.
    pub deadline: Duration,
    /// Retries of a retryable failure (429, 5xx, connection refused) after the first try.
    pub max_retries: u32,
    /// First backoff; doubles per retry, with jitter.
    pub backoff_base: Duration,
    /// Longest backoff (also caps `Retry-After`).
    pub backoff_max: Duration,
    /// Calls in flight at once.
    pub max_concurrency: usize,
    /// `max_tokens` of the answer.
    pub max_completion_tokens: u32,
    /// After this long on a weaker response mode, try the strongest one again.
    pub mode_reprobe_after: Duration,
}

impl LlmConfig {
    /// A config with production defaults for `base_url` and `model`.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key_file: None,
            request_timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(90),
            max_retries: 2,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(8),
            max_concurrency: 4,
            max_completion_tokens: 512,
            mode_reprobe_after: Duration::from_secs(3600),
        }
    }
}

/// The LLM configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmConfigError {
    /// The base URL does not parse or is not http(s).
    #[error("LLM base URL {url:?} is invalid: {message}")]
    BaseUrl {
        /// The URL as configured (credentials, if any, removed).
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    /// Zero concurrency would block every call.
    #[error("max_concurrency must be at least 1")]
    NoConcurrency,
}

/// How the answer's JSON shape is requested from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseMode {
    /// `{"type":"json_schema","json_schema":{"name","schema","strict":true}}` (OpenAI, vLLM, Ollama, LiteLLM, llama.cpp).
    JsonSchema,
    /// `{"type":"json_object","schema":{…}}` (llama-cpp-python).
    JsonObjectSchema,
    /// `{"type":"json_object"}`: JSON mode; the schema is only in the prompt.
    JsonObject,
}

impl ResponseMode {
    /// Name used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseMode::JsonSchema => "json_schema",
            ResponseMode::JsonObjectSchema => "json_object+schema",
            ResponseMode::JsonObject => "json_object",
        }
    }

    /// The next mode to try when this one is refused.
    pub fn weaker(self) -> Option<Self> {
        match self {
            ResponseMode::JsonSchema => Some(ResponseMode::JsonObjectSchema),
            ResponseMode::JsonObjectSchema => Some(ResponseMode::JsonObject),
            ResponseMode::JsonObject => None,
        }
    }

    /// The `response_format` request field for this mode.
    pub fn response_format(self, schema: &Value) -> Value {
        match self {
            ResponseMode::JsonSchema => {
                json!({"type": "json_schema", "json_schema": {"name": SCHEMA_NAME, "schema": schema, "strict": true}})
            }
            ResponseMode::JsonObjectSchema => json!({"type": "json_object", "schema": schema}),
            ResponseMode::JsonObject => json!({"type": "json_object"}),
        }
    }
}

/// Why no answer came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// One request exceeded [`LlmConfig::request_timeout`].
    #[error("no answer within the request timeout of {0:?}")]
    Timeout(Duration),
    /// The overall [`LlmConfig::deadline`] passed.
    #[error("the LLM deadline of {0:?} passed")]
    Deadline(Duration),
    /// All call slots stayed busy until the deadline.
    #[error("all {0} LLM call slots stayed busy until the deadline")]
    Saturated(usize),
    /// The endpoint answered with a non-2xx status.
    #[error("HTTP {status} from the LLM endpoint: {body}")]
    Http {
        /// The status code.
        status: u16,
        /// The start of the response body.
        body: String,
        /// The server's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// The endpoint could not be reached.
    #[error("cannot connect to the LLM endpoint: {0}")]
    Connect(String),
    /// Another transport failure.
    #[error("transport error talking to the LLM endpoint: {0}")]
    Transport(String),
    /// A 2xx response that is not a chat completion.
    #[error("the LLM endpoint's response is not a chat completion: {0}")]
    Protocol(String),
    /// The API key file cannot be used.
    #[error("{0}")]
    ApiKey(String),
}

impl LlmError {
    /// PascalCase category, for logs and reasons.
    pub fn category(&self) -> &'static str {
        match self {
            LlmError::Timeout(_) => "Timeout",
            LlmError::Deadline(_) => "Deadline",
            LlmError::Saturated(_) => "Saturated",
            LlmError::Http { .. } => "HttpStatus",
            LlmError::Connect(_) => "Connect",
            LlmError::Transport(_) => "Transport",
            LlmError::Protocol(_) => "Protocol",
            LlmError::ApiKey(_) => "ApiKey",
        }
    }

    fn status_label(&self) -> String {
        match self {
            LlmError::Http { status, .. } => status.to_string(),
            other => other.category().to_ascii_lowercase(),
        }
    }

    fn retryable(&self) -> bool {
        match self {
            LlmError::Http { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504),
            LlmError::Connect(_) => true,
            LlmError::Timeout(_)
            | LlmError::Deadline(_)
            | LlmError::Saturated(_)
            | LlmError::Transport(_)
            | LlmError::Protocol(_)
            | LlmError::ApiKey(_) => false,
        }
    }

    /// Whether the status suggests the server rejects the response mode itself.
    fn may_reject_mode(&self) -> bool {
        matches!(
            self,
            LlmError::Http {
                status: 400 | 422 | 500 | 501,
                ..
            }
        )
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// What came back from a successful call.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The first choice's content (text parts joined).
    pub content: Option<String>,
    /// The first choice's `refusal`, when the model declined.
    pub refusal: Option<String>,
    /// How many choices the response had.
    pub choices: usize,
    /// The first choice's `finish_reason`.
    pub finish_reason: Option<String>,
    /// `usage.prompt_tokens`.
    pub prompt_tokens: Option<u32>,
    /// `usage.completion_tokens`.
    pub completion_tokens: Option<u32>,
    /// The model that answered, as the server names it.
    pub model: Option<String>,
    /// The response mode that worked.
    pub mode: ResponseMode,
    /// HTTP requests made, fallbacks and retries included.
    pub requests: u32,
}

/// The backoff before retry number `attempt` (0-based): exponential from `base`, capped at
/// `max`, with "equal jitter" (half fixed, half random by `jitter` in `[0, 1)`); a server's
/// `Retry-After` wins, capped at `max`.
pub fn backoff_delay(
    attempt: u32,
    base: Duration,
    max: Duration,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    if let Some(ra) = retry_after {
        return ra.min(max);
    }
    let cap = base.saturating_mul(1u32 << attempt.min(16)).min(max);
    cap / 2 + cap.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

/// The client for one endpoint.
pub struct LlmClient {
    cfg: LlmConfig,
    endpoint: String,
    endpoint_host: String,
    client: Client<OpenAIConfig>,
    slots: Semaphore,
    modes: Mutex<HashMap<String, (ResponseMode, Instant)>>,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient")
            .field("endpoint", &self.endpoint)
            .field("model", &self.cfg.model)
            .finish_non_exhaustive()
    }
}

impl LlmClient {
    /// Builds the client; fails on an unusable base URL.
    pub fn new(cfg: LlmConfig) -> Result<Self, LlmConfigError> {
        if cfg.max_concurrency == 0 {
            return Err(LlmConfigError::NoConcurrency);
        }
        let endpoint = cfg.base_url.trim_end_matches('/').to_owned();
        let endpoint_host = endpoint_host(&endpoint)?;
        ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| LlmConfigError::HttpClient(e.to_string()))?;
        // The key goes per request (read fresh from its file); clear everything the default
        // config would pick up from the environment.
        let config = OpenAIConfig::new()
            .with_api_base(endpoint.clone())
            .with_api_key("")
            .with_org_id("")
            .with_project_id("");
        let client = Client::with_config(config).with_http_service(StatusService {
            inner: ReqwestService::new(http),
        });
        Ok(Self {
            slots: Semaphore::new(cfg.max_concurrency),
            cfg,
            endpoint,
            endpoint_host,
            client,
            modes: Mutex::new(HashMap::new()),
        })
    }

    /// The endpoint's host (what `Decision.endpoint` records).
    pub fn endpoint_host(&self) -> &str {
        &self.endpoint_host
    }

    /// The configured model.
    pub fn model(&self) -> &str {
        &self.cfg.model
    }

    /// `max_tokens` of the answer.
    pub fn max_completion_tokens(&self) -> u32 {
        self.cfg.max_completion_tokens
    }

    /// The response mode the next call starts with, and whether it is known to work.
    pub fn current_mode(&self) -> (ResponseMode, bool) {
        let modes = self.modes.lock().unwrap_or_else(|e| e.into_inner());
        match modes.get(&self.endpoint) {
            Some((mode, since))
                if *mode == ResponseMode::JsonSchema
                    || since.elapsed() < self.cfg.mode_reprobe_after =>
            {
                (*mode, true)
            }
            _ => (ResponseMode::JsonSchema, false),
        }
    }

    fn remember(&self, mode: ResponseMode, probed: bool) {
        let mut modes = self.modes.lock().unwrap_or_else(|e| e.into_inner());
        let changed = modes.get(&self.endpoint).is_none_or(|(m, _)| *m != mode);
        if probed || changed {
            modes.insert(self.endpoint.clone(), (mode, Instant::now()));
        }
    }

    /// Asks the model, with mode fallback, retries and the overall deadline.
    pub async fn complete(
        &self,
        prompt: &Prompt,
        schema: &Value,
        metrics: &Metrics,
    ) -> Result<Completion, LlmError> {
        let deadline = tokio::time::Instant::now() + self.cfg.deadline;
        let _permit = match tokio::time::timeout_at(deadline, self.slots.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) | Err(_) => return Err(LlmError::Saturated(self.cfg.max_concurrency)),
        };
        let key = self.api_key().await?;
        let (mut mode, confirmed) = self.current_mode();
        let mut retries = 0u32;
        let mut requests = 0u32;
        loop {
            let body = self.request_body(prompt, schema, mode);
            requests += 1;
            let result =
                match tokio::time::timeout_at(deadline, self.send(&body, key.as_deref())).await {
                    Ok(result) => result,
                    Err(_) => Err(LlmError::Deadline(self.cfg.deadline)),
                };
            let err = match result {
                Ok(resp) => {
                    metrics.llm_request(mode.as_str(), "200".to_owned());
                    self.remember(mode, !confirmed);
                    return Ok(resp.into_completion(mode, requests));
                }
                Err(err) => err,
            };
            metrics.llm_request(mode.as_str(), err.status_label());
            if !confirmed
                && err.may_reject_mode()
                && let Some(weaker) = mode.weaker()
            {
                tracing::info!(endpoint = %self.endpoint_host, from = mode.as_str(), to = weaker.as_str(), error = %err,
                    "LLM endpoint refused the response mode; trying a weaker one");
                mode = weaker;
                continue;
            }
            if err.retryable() && retries < self.cfg.max_retries {
                let delay = backoff_delay(
                    retries,
                    self.cfg.backoff_base,
                    self.cfg.backoff_max,
                    err.retry_after(),
                    rand::random::<f64>(),
                );
                if tokio::time::Instant::now() + delay >= deadline {
                    return Err(err);
                }
                retries += 1;
                tracing::warn!(endpoint = %self.endpoint_host, retry = retries, delay_ms = delay.as_millis() as u64, error = %err,
                    "LLM request failed; retrying");
                tokio::time::sleep(delay).await;
                continue;
            }
            return Err(err);
        }
    }

    fn request_body(&self, prompt: &Prompt, schema: &Value, mode: ResponseMode) -> Value {
        json!({
            "model": self.cfg.model,
            "messages": [
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": prompt.user},
            ],
            "temperature": 0,
            "max_tokens": self.cfg.max_completion_tokens,
            "stream": false,
            "response_format": mode.response_format(schema),
        })
    }

    async fn send(&self, body: &Value, key: Option<&str>) -> Result<ChatResponse, LlmError> {
        let mut chat = self.client.chat();
        if let Some(key) = key {
            chat = chat
                .header(AUTHORIZATION, format!("Bearer {key}"))
                .map_err(|_| {
                    LlmError::ApiKey(
                        "the API key contains characters not allowed in an HTTP header".to_owned(),
                    )
                })?;
        }
        chat.create_byot(body).await.map_err(|e| self.classify(e))
    }

    async fn api_key(&self) -> Result<Option<String>, LlmError> {
        let Some(path) = &self.cfg.api_key_file else {
            return Ok(None);
        };
        let raw = tokio::fs::read_to_string(path).await.map_err(|e| {
            LlmError::ApiKey(format!(
                "cannot read the API key file {}: {}",
                path.display(),
                e.kind()
            ))
        })?;
        let key = raw.trim();
        if key.is_empty() {
            return Err(LlmError::ApiKey(format!(
                "the API key file {} is empty",
                path.display()
            )));
        }
        Ok(Some(key.to_owned()))
    }

    fn classify(&self, e: OpenAIError) -> LlmError {
        match e {
            OpenAIError::Boxed(boxed) => match boxed.downcast::<HttpStatus>() {
                Ok(s) => LlmError::Http {
                    status: s.status,
                    body: s.body,
                    retry_after: s.retry_after,
                },
                Err(other) => LlmError::Transport(other.to_string()),
            },
            OpenAIError::Reqwest(err) => {
                let err = err.without_url();
                if err.is_timeout() {
                    LlmError::Timeout(self.cfg.request_timeout)
                } else if err.is_connect() {
                    LlmError::Connect(err.to_string())
                } else {
                    LlmError::Transport(err.to_string())
                }
            }
            OpenAIError::JSONDeserialize(err, _) => LlmError::Protocol(err.to_string()),
            OpenAIError::ApiError(api) => LlmError::Http {
                status: api.status_code.as_u16(),
                body: truncate(&api.api_error.message, MAX_ERROR_BODY),
                retry_after: None,
            },
            other => LlmError::Transport(other.to_string()),
        }
    }
}

/// The host of the base URL; refuses URLs that are not http(s) or that carry credentials (the
/// key belongs in the key file, where it is never logged).
fn endpoint_host(endpoint: &str) -> Result<String, LlmConfigError> {
    let bad = |message: &str| LlmConfigError::BaseUrl {
        url: strip_userinfo(endpoint),
        message: message.to_owned(),
    };
    let url = url::Url::parse(endpoint).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials do not belong in the URL; use the API key file",
        ));
    }
    url.host_str()
        .map(str::to_owned)
        .ok_or_else(|| bad("the URL has no host"))
}

fn strip_userinfo(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(i), Some(at)) if at > i => format!("{}{}", &s[..i + 3], &s[at + 1..]),
        _ => s.to_owned(),
    }
}

/// reqwest is built without a bundled crypto provider (the workspace standardises on ring);
/// install ring as the process default unless something else already is.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: a provider is then installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A non-2xx response, with its status kept.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}")]
struct HttpStatus {
    status: u16,
    body: String,
    retry_after: Option<Duration>,
}

/// The transport under async-openai: plain reqwest (no built-in retries), with every non-2xx
/// response turned into [`HttpStatus`].
#[derive(Clone)]
struct StatusService {
    inner: ReqwestService,
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send + 'static>>;

impl tower::Service<HttpRequestFactory> for StatusService {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        let sent = self.inner.call(request);
        Box::pin(async move {
            let response = sent.await?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = response
                .bytes()
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            Err(OpenAIError::Boxed(Box::new(HttpStatus {
                status: status.as_u16(),
                body: truncate(body.trim(), MAX_ERROR_BODY),
                retry_after,
            })))
        })
    }
}

/// A chat completion, read leniently: servers differ in what else they send.
#[derive(Debug, Deserialize)]
struct ChatResponse {
    #[serde(default)]
    choices: Vec<ChatChoice>,
    #[serde(default)]
    usage: Option<ChatUsage>,
    #[serde(default)]
    model: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChatChoice {
    #[serde(default)]
    message: Option<ChatMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChatUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

impl ChatResponse {
    fn into_completion(self, mode: ResponseMode, requests: u32) -> Completion {
        let choices = self.choices.len();
        let first = self.choices.into_iter().next();
        let finish_reason = first.as_ref().and_then(|c| c.finish_reason.clone());
        let message = first.and_then(|c| c.message);
        let refusal = message.as_ref().and_then(|m| m.refusal.clone());
        let content = message.and_then(|m| m.content).and_then(|c| match c {
            Value::Null => None,
            Value::String(s) => Some(s),
            // Content parts: join the text ones.
            Value::Array(parts) => Some(
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(""),
            ),
            other => Some(other.to_string()),
        });
        let tokens = |n: Option<u64>| n.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        Completion {
            content,
            refusal,
            choices,
            finish_reason,
            prompt_tokens: tokens(self.usage.as_ref().and_then(|u| u.prompt_tokens)),
            completion_tokens: tokens(self.usage.as_ref().and_then(|u| u.completion_tokens)),
            model: self.model,
            mode,
            requests,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_with_bounded_jitter() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        assert_eq!(
            backoff_delay(0, base, max, None, 0.0),
            Duration::from_millis(50)
        );
        assert_eq!(
            backoff_delay(0, base, max, None, 1.0),
            Duration::from_millis(100)
        );
        assert_eq!(
            backoff_delay(2, base, max, None, 0.0),
            Duration::from_millis(200)
        );
        assert_eq!(backoff_delay(10, base, max, None, 1.0), max);
        assert!(backoff_delay(31, base, max, None, 0.5) <= max);
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(2));
        assert_eq!(
            backoff_delay(0, base, max, Some(Duration::from_secs(1)), 0.9),
            Duration::from_secs(1)
        );
        assert_eq!(
            backoff_delay(0, base, max, Some(Duration::from_secs(60)), 0.9),
            max
        );
    }

    #[test]
    fn the_mode_ladder_goes_from_strict_schema_to_plain_json() {
        assert_eq!(
            ResponseMode::JsonSchema.weaker(),
            Some(ResponseMode::JsonObjectSchema)
        );
        assert_eq!(
            ResponseMode::JsonObjectSchema.weaker(),
            Some(ResponseMode::JsonObject)
        );
        assert_eq!(ResponseMode::JsonObject.weaker(), None);
        let s = json!({"oneOf": []});
        assert_eq!(
            ResponseMode::JsonSchema.response_format(&s),
            json!({"type": "json_schema", "json_schema": {"name": "salve_decision", "schema": s, "strict": true}})
        );
        assert_eq!(
            ResponseMode::JsonObjectSchema.response_format(&s),
            json!({"type": "json_object", "schema": s})
        );
        assert_eq!(
            ResponseMode::JsonObject.response_format(&s),
            json!({"type": "json_object"})
        );
    }

    #[test]
    fn only_http_and_https_urls_without_credentials_are_accepted() {
        assert_eq!(
            endpoint_host("https://api.openai.com/v1"),
            Ok("api.openai.com".to_owned())
        );
        assert_eq!(
            endpoint_host("http://127.0.0.1:8000/v1"),
            Ok("127.0.0.1".to_owned())
        );
        let err =
            endpoint_host("https://user:sk-secret@api.example.com/v1").expect_err("credentials");
        assert!(!err.to_string().contains("sk-secret"), "{err}");
        assert!(endpoint_host("ftp://x/v1").is_err());
        assert!(endpoint_host("not a url").is_err());
    }

    #[test]
    fn status_codes_drive_retry_and_mode_fallback() {
        let http = |status| LlmError::Http {
            status,
            body: String::new(),
            retry_after: None,
        };
        assert!(http(429).retryable() && !http(429).may_reject_mode());
        assert!(http(500).retryable() && http(500).may_reject_mode());
        assert!(http(503).retryable() && !http(503).may_reject_mode());
        assert!(!http(400).retryable() && http(400).may_reject_mode());
        assert!(!http(401).retryable() && !http(401).may_reject_mode());
        assert!(!LlmError::Timeout(Duration::from_secs(1)).retryable());
        assert!(LlmError::Connect("refused".into()).retryable());
    }
}
