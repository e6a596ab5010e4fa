//! The REST API (Axum + utoipa): one explicit route list, the OpenAPI document
//! at `/openapi.json`, Swagger UI at `/docs`, problem+json errors everywhere.

pub mod error;
pub mod extract;
pub mod fields;
pub mod metrics;
pub mod routes;
pub mod trace;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::gateway::{Gateway, GatewaySettings};
use crate::services::Services;
use error::ApiError;
use extract::OperatorTokens;

/// Largest request body accepted (a descriptor is at most 1 MiB).
pub const BODY_LIMIT: usize = 1 << 20;

/// Everything handlers need: the node's services and the operator tokens.
#[derive(Debug)]
pub struct App {
    /// Storage, keys, registry, HTTP client, configuration.
    pub services: Arc<Services>,
    /// Accepted operator tokens.
    pub operator_tokens: OperatorTokens,
    /// The webhook gateway.
    pub gateway: Gateway,
}

impl App {
    /// The API's state over `services`; starts the webhook gateway's writer
    /// (call inside the runtime).
    pub fn new(services: Arc<Services>, operator_tokens: OperatorTokens) -> Self {
        let settings = GatewaySettings::from_config(&services.config);
        App {
            gateway: Gateway::new(Arc::clone(&services), settings),
            services,
            operator_tokens,
        }
    }
}

impl std::ops::Deref for App {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.services
    }
}

/// Shared handler state.
#[derive(Debug, Clone)]
pub struct AppState(pub Arc<App>);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Poblysh Connectors",
        description = "Connections to SaaS providers and the normalized Signals they produce. Operator routes need `Authorization: Bearer <token>`; tenant routes also need `X-Tenant-Id`.",
    ),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "providers", description = "The connector catalogue"),
        (name = "connections", description = "A tenant's connections"),
        (name = "connect", description = "OAuth connect flow"),
        (name = "jobs", description = "Sync jobs"),
        (name = "signals", description = "Normalized Signals"),
        (name = "subscriptions", description = "Signals pushed to subscribers (Standard Webhooks)"),
        (name = "tenants", description = "A tenant's settings"),
        (name = "webhooks", description = "Provider deliveries (signature-verified)"),
    ),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("An operator token (POBLYSH_OPERATOR_TOKENS)"))
                        .build(),
                ),
            );
    }
}

/// Every documented route.
fn api() -> OpenApiRouter<AppState> {
    use routes::{
        connections, health, jobs, oauth, providers, signals, subscriptions, tenants, webhooks,
    };
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::metrics))
        .routes(routes!(providers::list))
        .routes(routes!(providers::get, providers::put, providers::delete))
        .routes(routes!(connections::list, connections::create))
        .routes(routes!(
            connections::get,
            connections::update,
            connections::delete
        ))
        .routes(routes!(connections::test))
        .routes(routes!(connections::test_new))
        .routes(routes!(connections::stats))
        .routes(routes!(connections::issue_webhook_token))
        .routes(routes!(
            connections::pending_webhook_secret,
            connections::confirm_webhook_secret
        ))
        .routes(routes!(oauth::start))
        .routes(routes!(oauth::callback))
        .routes(routes!(jobs::sync))
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::get))
        .routes(routes!(signals::list))
        .routes(routes!(signals::stream))
        .routes(routes!(subscriptions::list, subscriptions::create))
        .routes(routes!(
            subscriptions::get,
            subscriptions::update,
            subscriptions::delete
        ))
        .routes(routes!(tenants::get, tenants::put))
        .routes(routes!(webhooks::receive))
        .routes(routes!(webhooks::receive_for_tenant))
}

/// Methods other than POST on the webhook paths (handshakes such as Trello's
/// `HEAD`; anything else gets a 405 problem).
fn webhook_handshakes() -> Router<AppState> {
    use axum::routing::{MethodFilter, on};
    let others = MethodFilter::GET
        .or(MethodFilter::HEAD)
        .or(MethodFilter::PUT)
        .or(MethodFilter::PATCH)
        .or(MethodFilter::DELETE)
        .or(MethodFilter::OPTIONS);
    Router::new()
        .route("/webhooks/{provider}", on(others, routes::webhooks::other))
        .route(
            "/webhooks/{provider}/{tenant_id}",
            on(others, routes::webhooks::other_for_tenant),
        )
}

/// The OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, doc) = api().split_for_parts();
    complete(doc)
}

/// The document with its version and the error answers every route gives by
/// the shared extractors and limits, so no route can forget one: 401 where
/// the operator token is required, 400 where `X-Tenant-Id` is, 413 where a
/// body is read. (415 is each JSON route's own.)
fn complete(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::path::Operation;
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let problem = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build(),
        )
    };
    let complete_one = |op: &mut Operation| {
        let operator = op
            .security
            .iter()
            .flatten()
            .any(|r| serde_json::to_value(r).is_ok_and(|v| v.get("bearer").is_some()));
        let tenant = op.parameters.iter().flatten().any(|p| match p {
            RefOr::T(p) => p.name == "X-Tenant-Id",
            RefOr::Ref(_) => false,
        });
        let body = op.request_body.is_some();
        let responses = &mut op.responses.responses;
        let mut add = |status: &str, description: &str| {
            responses
                .entry(status.to_owned())
                .or_insert_with(|| problem(description));
        };
        if operator {
            add("401", "No or bad operator token");
        }
        if tenant {
            add("400", "Missing or bad X-Tenant-Id, or an invalid request");
        }
        if body {
            add("413", "The body is over the limit");
        }
    };
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
        ]
        .into_iter()
        .flatten()
        {
            complete_one(op);
        }
    }
    doc
}

/// What a `--role worker` node serves: liveness, readiness and metrics only.
pub fn ops_router(state: AppState) -> Router {
    metrics::handle();
    Router::new()
        .route("/healthz", axum::routing::get(routes::health::healthz))
        .route("/readyz", axum::routing::get(routes::health::readyz))
        .route("/metrics", axum::routing::get(metrics::metrics))
        .fallback(not_found)
        .layer(axum::middleware::map_response(error::problems_only))
        .layer(axum::middleware::from_fn(trace::request))
        .with_state(state)
}

/// The API router.
pub fn router(state: AppState) -> Router {
    metrics::handle();
    let (router, doc) = api().split_for_parts();
    let doc = complete(doc);
    router
        .merge(webhook_handshakes())
        .merge(crate::ui::router(&state))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", doc))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(error::problems_only))
        .layer(axum::middleware::from_fn(error::bound_uri))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::middleware::from_fn(trace::request))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}
