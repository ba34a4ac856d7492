//! JSON logs (one object per line) through tracing-subscriber.
//!
//! The writer is a parameter so tests can capture exactly what production prints and check
//! that no secret reaches it.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The filter: `RUST_LOG` when set, else `info` for salve and `warn` for everything else.
pub fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,salve_webhook=info,salve=info"))
}

/// A JSON subscriber writing to `writer`.
pub fn subscriber<W>(writer: W, filter: EnvFilter) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_target(true)
        .with_env_filter(filter)
        .with_writer(writer)
        .finish()
}

/// Installs JSON logging to stderr (like the operator) as the global default (once; later calls do nothing).
pub fn init() {
    let _ = tracing::subscriber::set_global_default(subscriber(std::io::stderr, filter()));
}
