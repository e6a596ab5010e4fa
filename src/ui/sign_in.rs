//! Signing in and out with an operator token, and choosing the tenant the
//! dashboard acts for. Sign-in attempts are limited per client address.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tower_sessions::Session;
use uuid::Uuid;

use super::session::{self, Data, SignedIn};
use super::view::{self, Frame};
use super::{FormFields, PeerIp, see_other};
use crate::api::AppState;

/// Sign-in attempts a client address may make in a minute.
pub const ATTEMPTS_PER_MINUTE: u32 = 5;

/// The sign-in limiter: `ATTEMPTS_PER_MINUTE` per client address (one shared
/// allowance for clients whose address is unknown).
#[derive(Debug)]
pub struct Attempts(DefaultKeyedRateLimiter<Option<IpAddr>>);

impl Default for Attempts {
    fn default() -> Self {
        let n = NonZeroU32::new(ATTEMPTS_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        Attempts(RateLimiter::keyed(Quota::per_minute(n)))
    }
}

impl Attempts {
    /// Takes one attempt for `ip`; false when it has none left.
    fn take(&self, ip: Option<IpAddr>) -> bool {
        let ok = self.0.check_key(&ip).is_ok();
        if self.0.len() > 10_000 {
            self.0.retain_recent();
        }
        ok
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct Login {
    frame: Frame,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "tenant.html")]
struct ChooseTenant {
    frame: Frame,
    recent: Vec<String>,
    value: String,
    error: Option<String>,
}

fn login_page(csrf: String, status: StatusCode, error: Option<&str>) -> Response {
    view::page(
        status,
        &Login {
            frame: Frame::new("Sign in", csrf, false),
            error: error.map(str::to_owned),
        },
    )
}

/// The sign-in form's CSRF cookie: a double-submit token (the form carries
/// the same value), so showing the form stores nothing; sessions are made
/// only for operators who signed in.
pub const LOGIN_COOKIE: &str = "poblysh_login";

fn login_cookie(value: &str, max_age: time::Duration, secure: bool) -> String {
    tower_sessions::cookie::Cookie::build((LOGIN_COOKIE, value.to_owned()))
        .http_only(true)
        .same_site(tower_sessions::cookie::SameSite::Strict)
        .secure(secure)
        .path("/ui/login")
        .max_age(max_age)
        .build()
        .to_string()
}

/// The sign-in form with a fresh CSRF token (and its cookie).
fn login_page_with_token(state: &AppState, status: StatusCode, error: Option<&str>) -> Response {
    let token = session::new_token(state);
    let mut page = login_page(token.clone(), status, error);
    let cookie = login_cookie(&token, time::Duration::minutes(30), super::secure(state));
    if let Ok(value) = axum::http::HeaderValue::from_str(&cookie) {
        page.headers_mut()
            .append(axum::http::header::SET_COOKIE, value);
    }
    page
}

/// `GET /ui/login`.
pub async fn login_form(State(state): State<AppState>, session: Session) -> Response {
    if session::data(&session)
        .await
        .signed_in(state.0.ambient.now())
    {
        return see_other("/ui/connections");
    }
    login_page_with_token(&state, StatusCode::OK, None)
}

/// `POST /ui/login`: the operator token → a new signed-in session.
pub async fn login(
    State(state): State<AppState>,
    Extension(attempts): Extension<Arc<Attempts>>,
    PeerIp(ip): PeerIp,
    session: Session,
    FormFields(fields): FormFields,
) -> Response {
    if !attempts.take(ip) {
        return login_page_with_token(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many sign-in attempts. Wait a minute and try again."),
        );
    }
    let token = fields
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim())
        .unwrap_or_default();
    if token.is_empty() || !state.0.operator_tokens.accepts(token) {
        tracing::warn!(?ip, "a dashboard sign-in was refused");
        return login_page_with_token(
            &state,
            StatusCode::UNAUTHORIZED,
            Some("That is not an operator token of this service."),
        );
    }
    // A new session id on sign-in: an id planted before cannot ride along.
    if let Err(e) = session.cycle_id().await {
        tracing::error!(error = %e, "cannot renew a dashboard session");
        return view::error_page(StatusCode::SERVICE_UNAVAILABLE, "Try again.");
    }
    let now = state.0.ambient.now().timestamp();
    let data = Data {
        csrf: session::new_token(&state),
        signed_in_at: Some(now),
        seen_at: now,
        tenant: None,
        recent: Vec::new(),
    };
    if let Err(r) = session::store(&session, &data).await {
        return r;
    }
    // Sessions whose cookie expired are forgotten now and then: at sign-in.
    let cutoff = state.0.ambient.now() - session::ABSOLUTE;
    if let Err(e) = crate::db::repo::ui_sessions::prune(&state.0.db, cutoff).await {
        tracing::warn!(error = %e, "cannot prune dashboard sessions");
    }
    let mut done = see_other("/ui/tenant");
    if let Ok(value) = axum::http::HeaderValue::from_str(&login_cookie(
        "",
        time::Duration::ZERO,
        super::secure(&state),
    )) {
        done.headers_mut()
            .append(axum::http::header::SET_COOKIE, value);
    }
    done
}

/// `POST /ui/logout`.
pub async fn logout(session: Session) -> Response {
    let _ = session.flush().await;
    see_other("/ui/login")
}

fn tenant_page(
    signed: &SignedIn,
    status: StatusCode,
    value: &str,
    error: Option<&str>,
) -> Response {
    let mut frame = Frame::new("Choose a tenant", signed.data.csrf.clone(), true);
    frame.tenant = signed.data.tenant.map(|t| t.to_string());
    view::page(
        status,
        &ChooseTenant {
            frame,
            recent: signed.data.recent.iter().map(Uuid::to_string).collect(),
            value: value.to_owned(),
            error: error.map(str::to_owned),
        },
    )
}

/// `GET /ui/tenant`.
pub async fn tenant_form(signed: SignedIn) -> Response {
    tenant_page(&signed, StatusCode::OK, "", None)
}

/// `POST /ui/tenant`: act for the tenant given (a UUID).
pub async fn choose_tenant(signed: SignedIn, form: FormFields) -> Response {
    let given = form.get("tenant").unwrap_or_default().trim().to_owned();
    let Ok(tenant) = Uuid::parse_str(&given) else {
        return tenant_page(
            &signed,
            StatusCode::BAD_REQUEST,
            &given,
            Some("A tenant id is a UUID, such as 0190f3c2-5b7e-7c1a-9d4e-3f2a1b0c9d8e."),
        );
    };
    let mut data = signed.data.clone();
    data.choose(tenant);
    if let Err(r) = session::store(&signed.session, &data).await {
        return r;
    }
    see_other("/ui/connections")
}
