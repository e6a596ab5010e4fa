//! The operator dashboard at `/ui`: server-rendered pages (askama templates
//! compiled in), a little vendored JavaScript for live updates, and the same
//! operations as the REST API (its handlers are called, so a form is checked
//! exactly as a request is). Signed in with an operator token into a
//! server-side session; every state-changing request carries the session's
//! CSRF token; every answer carries a strict Content-Security-Policy.

#![allow(
    clippy::result_large_err,
    reason = "a page's early answer is a whole Response, returned once per request"
)]

mod assets;
mod catalogue;
mod monitor;
pub mod session;
mod sign_in;
pub mod view;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use subtle::ConstantTimeEq;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Session, SessionManagerLayer};

use crate::api::AppState;

/// Largest form the dashboard reads.
const FORM_LIMIT: usize = 64 * 1024;

/// The policy every dashboard answer carries: scripts, styles and requests
/// only from the service itself, no inline script, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Whether the dashboard's cookies are `Secure` (served over https).
pub fn secure(state: &AppState) -> bool {
    state
        .0
        .config
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"))
}

/// The dashboard's routes, with their session and security layers.
pub fn router(state: &AppState) -> Router<AppState> {
    let secure = secure(state);
    let sessions = SessionManagerLayer::new(session::DbStore(state.0.db.clone()))
        .with_name(session::COOKIE)
        .with_path("/ui")
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_secure(secure)
        .with_expiry(session::expiry());
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/connections") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/connections") }))
        .route("/ui/login", get(sign_in::login_form).post(sign_in::login))
        .route("/ui/logout", post(sign_in::logout))
        .route(
            "/ui/tenant",
            get(sign_in::tenant_form).post(sign_in::choose_tenant),
        )
        .route("/ui/catalogue", get(catalogue::catalogue))
        .route(
            "/ui/connect/{provider}",
            get(catalogue::setup_form).post(catalogue::connect),
        )
        .route("/ui/connect/{provider}/test", post(catalogue::test))
        .route("/ui/connect/{provider}/oauth", post(catalogue::oauth))
        .route(
            "/ui/connect/{provider}/callback",
            get(catalogue::oauth_callback),
        )
        .route("/ui/connections", get(monitor::connections))
        .route("/ui/connections/{id}", get(monitor::connection))
        .route("/ui/connections/{id}/live", get(monitor::live_fragment))
        .route("/ui/connections/{id}/enabled", post(monitor::set_enabled))
        .route("/ui/connections/{id}/test", post(monitor::test))
        .route("/ui/connections/{id}/sync", post(monitor::sync))
        .route(
            "/ui/connections/{id}/reauthorize",
            post(monitor::reauthorize),
        )
        .route(
            "/ui/connections/{id}/delete",
            get(monitor::confirm_delete).post(monitor::delete),
        )
        .route("/ui/assets/{file}", get(assets::asset))
        .route(
            "/ui/{*rest}",
            axum::routing::any(|| async {
                view::error_page(StatusCode::NOT_FOUND, "There is no such page.")
            }),
        )
        .layer(axum::Extension(std::sync::Arc::new(
            sign_in::Attempts::default(),
        )))
        .layer(axum::middleware::from_fn(csrf_guard))
        .layer(sessions)
        .layer(axum::middleware::map_response(security_headers))
}

/// Refuses a state-changing request whose CSRF token (the `_csrf` form field
/// or the `X-CSRF-Token` header) is not its session's (for the sign-in form,
/// not its CSRF cookie's).
async fn csrf_guard(request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let expected = if request.uri().path() == "/ui/login" {
        request
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(tower_sessions::cookie::Cookie::split_parse)
            .flatten()
            .find(|c| c.name() == sign_in::LOGIN_COOKIE)
            .map(|c| c.value().to_owned())
            .unwrap_or_default()
    } else {
        match request.extensions().get::<Session>() {
            Some(s) => session::data(s).await.csrf,
            None => String::new(),
        }
    };
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, FORM_LIMIT).await else {
        return view::error_page(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.");
    };
    let presented = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            url::form_urlencoded::parse(&bytes)
                .find(|(k, _)| k == "_csrf")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    let valid = !expected.is_empty()
        && presented.len() == expected.len()
        && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()));
    if !valid {
        return view::error_page(
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from this dashboard. Reload the page and try again.",
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The headers every dashboard answer carries.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
    ];
    for (name, value) in set {
        headers.insert(name, value);
    }
    response
}

/// A redirect after a form (303: the browser follows with a GET).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A form's fields, in order (`application/x-www-form-urlencoded`).
#[derive(Debug, Default)]
pub struct FormFields(pub Vec<(String, String)>);

impl FormFields {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for FormFields {
    type Rejection = Response;

    async fn from_request(request: Request, _: &S) -> Result<Self, Response> {
        let bytes = axum::body::to_bytes(request.into_body(), FORM_LIMIT)
            .await
            .map_err(|_| {
                view::error_page(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.")
            })?;
        Ok(FormFields(
            url::form_urlencoded::parse(&bytes)
                .filter(|(k, _)| k != "_csrf")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }
}

/// The peer's address, when the server knows it (`serve` records it).
#[derive(Debug, Clone, Copy)]
pub struct PeerIp(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(PeerIp(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}
