//! A scripted OpenAI-compatible Chat Completions server on a real loopback socket.
//!
//! Tests push [`Reply`]s; each `POST /v1/chat/completions` takes the next one and every request
//! is recorded ([`SeenRequest`]) so tests can assert on what the client sent: the response
//! mode, the prompt, the `Authorization` header. [`ScriptedLlm::reject_json_schema`] emulates
//! llama-cpp-python's server, which answers `response_format: {type: json_schema}` with HTTP 500
//! and only accepts `{"type":"json_object","schema":{…}}`. When the script runs dry the server
//! answers 500, so a test that makes more calls than it scripted fails loudly.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// One scripted response.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with a chat completion whose first choice has this content.
    Content {
        /// The assistant message content.
        content: String,
        /// `usage.prompt_tokens`.
        prompt_tokens: u32,
        /// `usage.completion_tokens`.
        completion_tokens: u32,
        /// `finish_reason` (`stop`, `length`…).
        finish_reason: String,
    },
    /// 200 with a chat completion whose first choice refuses (`content: null`, `refusal`).
    Refusal(String),
    /// 200 with `choices: []`.
    NoChoices,
    /// This status and body (and `Retry-After` when set).
    Status {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
        /// `Retry-After` in seconds.
        retry_after: Option<u64>,
    },
    /// 200 with this body verbatim.
    Body(String),
    /// Wait, then reply.
    Delayed(Duration, Box<Reply>),
}

impl Reply {
    /// A completion with `content`, 400 prompt and 40 completion tokens.
    pub fn content(content: impl Into<String>) -> Self {
        Reply::Content {
            content: content.into(),
            prompt_tokens: 400,
            completion_tokens: 40,
            finish_reason: "stop".into(),
        }
    }

    /// A completion choosing `playbook` with `params`.
    pub fn choose(playbook: &str, params: Value, reasoning: &str) -> Self {
        Self::content(
            json!({"playbook": playbook, "params": params, "reasoning": reasoning}).to_string(),
        )
    }

    /// A completion choosing to escalate.
    pub fn escalate(reasoning: &str) -> Self {
        Self::content(json!({"playbook": "escalate", "reasoning": reasoning}).to_string())
    }

    /// A bare status with a body.
    pub fn status(status: u16, body: impl Into<String>) -> Self {
        Reply::Status {
            status,
            body: body.into(),
            retry_after: None,
        }
    }

    /// 429 with `Retry-After: 0` and an OpenAI-style error body.
    pub fn rate_limited() -> Self {
        Reply::Status {
            status: 429,
            body: json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}).to_string(),
            retry_after: Some(0),
        }
    }

    /// Sets the usage of a [`Reply::Content`].
    pub fn with_usage(self, prompt: u32, completion: u32) -> Self {
        match self {
            Reply::Content {
                content,
                finish_reason,
                ..
            } => Reply::Content {
                content,
                prompt_tokens: prompt,
                completion_tokens: completion,
                finish_reason,
            },
            other => other,
        }
    }

    /// Sets the `finish_reason` of a [`Reply::Content`].
    pub fn finished_by(self, reason: &str) -> Self {
        match self {
            Reply::Content {
                content,
                prompt_tokens,
                completion_tokens,
                ..
            } => Reply::Content {
                content,
                prompt_tokens,
                completion_tokens,
                finish_reason: reason.to_owned(),
            },
            other => other,
        }
    }

    /// This reply after `delay`.
    pub fn after(self, delay: Duration) -> Self {
        Reply::Delayed(delay, Box::new(self))
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The raw body.
    pub raw: String,
    /// The body as JSON (`Null` if it did not parse).
    pub body: Value,
}

impl SeenRequest {
    /// The response mode asked for: `json_schema`, `json_object+schema`, `json_object` or `none`.
    pub fn mode(&self) -> &'static str {
        let rf = &self.body["response_format"];
        match (rf["type"].as_str(), rf.get("schema").is_some()) {
            (Some("json_schema"), _) => "json_schema",
            (Some("json_object"), true) => "json_object+schema",
            (Some("json_object"), false) => "json_object",
            _ => "none",
        }
    }

    /// The answer schema sent, in either schema-carrying mode.
    pub fn response_schema(&self) -> Option<&Value> {
        let rf = &self.body["response_format"];
        rf.get("schema")
            .or_else(|| rf.get("json_schema").and_then(|j| j.get("schema")))
    }

    /// Content of the message with `role`.
    pub fn message(&self, role: &str) -> Option<&str> {
        self.body["messages"]
            .as_array()?
            .iter()
            .find(|m| m["role"] == role)?
            .get("content")?
            .as_str()
    }
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<SeenRequest>>,
    reject_json_schema: AtomicBool,
    served: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The scripted server. Stops when dropped.
pub struct ScriptedLlm {
    base_url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl ScriptedLlm {
    /// Starts on `127.0.0.1` with an ephemeral port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "scripted LLM server stopped");
            }
        });
        Ok(Self {
            base_url: format!("http://{addr}/v1"),
            shared,
            task,
        })
    }

    /// The base URL to configure (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Queues a reply.
    pub fn push(&self, reply: Reply) -> &Self {
        lock(&self.shared.script).push_back(reply);
        self
    }

    /// Emulates llama-cpp-python: `json_schema` response formats get HTTP 500 (and consume no
    /// scripted reply).
    pub fn reject_json_schema(&self, yes: bool) -> &Self {
        self.shared.reject_json_schema.store(yes, Ordering::SeqCst);
        self
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        lock(&self.shared.seen).clone()
    }

    /// The most requests that were being answered at the same time.
    pub fn max_in_flight(&self) -> u64 {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Scripted replies not used yet.
    pub fn pending(&self) -> usize {
        lock(&self.shared.script).len()
    }
}

impl Drop for ScriptedLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn chat(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let raw = String::from_utf8_lossy(&body).into_owned();
    let seen = SeenRequest {
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_str(&raw).unwrap_or(Value::Null),
        raw,
    };
    let model = seen.body["model"]
        .as_str()
        .unwrap_or("scripted-model")
        .to_owned();
    let rejects = shared.reject_json_schema.load(Ordering::SeqCst) && seen.mode() == "json_schema";
    lock(&shared.seen).push(seen);
    if rejects {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error: response_format json_schema is not supported",
        )
            .into_response();
    }
    let reply = lock(&shared.script)
        .pop_front()
        .unwrap_or_else(|| Reply::status(500, "scripted LLM server: no scripted reply left"));
    let n = shared.served.fetch_add(1, Ordering::SeqCst);
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
    // Counts down even when the client gives up and the handler is dropped mid-delay.
    let _in_flight = InFlight(&shared.in_flight);
    respond(reply, &model, n).await
}

struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn respond(mut reply: Reply, model: &str, n: u64) -> Response {
    while let Reply::Delayed(delay, inner) = reply {
        tokio::time::sleep(delay).await;
        reply = *inner;
    }
    let completion = |choices: Value, usage: Value| {
        json!({
            "id": format!("chatcmpl-scripted-{n}"),
            "object": "chat.completion",
            "created": 1_764_288_000,
            "model": model,
            "choices": choices,
            "usage": usage,
        })
    };
    let json_response =
        |v: Value| ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response();
    match reply {
        Reply::Content {
            content,
            prompt_tokens,
            completion_tokens,
            finish_reason,
        } => json_response(completion(
            json!([{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}]),
            json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}),
        )),
        Reply::Refusal(text) => json_response(completion(
            json!([{"index": 0, "message": {"role": "assistant", "content": null, "refusal": text}, "finish_reason": "stop"}]),
            json!({"prompt_tokens": 300, "completion_tokens": 10, "total_tokens": 310}),
        )),
        Reply::NoChoices => json_response(completion(
            json!([]),
            json!({"prompt_tokens": 300, "completion_tokens": 0, "total_tokens": 300}),
        )),
        Reply::Status {
            status,
            body,
            retry_after,
        } => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (code, body).into_response();
            if let Some(secs) = retry_after
                && let Ok(v) = secs.to_string().parse()
            {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            response
        }
        Reply::Body(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Reply::Delayed(..) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "unreachable: delays are unwrapped above",
        )
            .into_response(),
    }
}
