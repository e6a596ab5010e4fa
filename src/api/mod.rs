//! The REST API (Axum). For now: health and the provider catalogue; storage,
//! connections, sync and webhooks come with their issues.

pub mod error;
pub mod providers;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use crate::registry::Registry;
use error::ApiError;

/// Everything handlers need.
#[derive(Debug)]
pub struct App {
    /// The loaded connectors.
    pub registry: Registry,
}

/// Shared handler state.
#[derive(Debug, Clone)]
pub struct AppState(pub Arc<App>);

/// The API router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/providers", get(providers::list))
        .route("/providers/{id}", get(providers::get))
        .fallback(not_found)
        .with_state(state)
}

async fn healthz() -> axum::Json<Value> {
    axum::Json(json!({"status": "ok"}))
}

async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> axum::Json<Value> {
    axum::Json(json!({"status": "ready", "providers": state.0.registry.len()}))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}
