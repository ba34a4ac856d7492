//! salve's Alertmanager webhook shim.
//!
//! Alertmanager POSTs its webhook (version 4) to `/alert`; every **firing** alert becomes exactly
//! one `Incident` in the configured namespace, every **resolved** alert marks its Incident with
//! the `salve.dev/alert-resolved-at` annotation. The shim answers 2xx only once everything the
//! payload asked for is persisted, so Alertmanager's own retry covers every failure; duplicates
//! (group re-sends, HA pairs, shim replicas, retries) collapse on a deterministic name and, after
//! the first, cost no API write at all.
//!
//! The data flow, module by module:
//! - [`payload`]: parse and validate the webhook body, naming the exact path of any problem;
//! - [`build`]: turn one alert into an Incident, bounded so it can never exceed API limits;
//! - [`store`]: persist it (409-tolerant create, server-side apply for resolved marks) behind
//!   a cache of recently persisted names;
//! - [`alertmanager`]: fetch a truncated group's full alert list from Alertmanager's API v2;
//! - [`handlers`] and [`server`]: the HTTP surface (auth, limits, health, metrics, TLS,
//!   graceful shutdown); [`config`] is its command line.
#![forbid(unsafe_code)]

pub mod alertmanager;
pub mod auth;
pub mod build;
pub mod cache;
pub mod config;
pub mod error;
pub mod handlers;
pub mod logging;
pub mod metrics;
pub mod payload;
pub mod server;
pub mod store;

pub use config::Config;
pub use metrics::Metrics;
pub use server::{RunningServer, run, start};
