//! The catalogue (every connector, with the tenant's status on each, searched
//! and filtered like `GET /providers?q=&category=`) and the setup flow: a form
//! generated from the connector's credential and config fields, a health check
//! of the values before anything is stored, and the connection created by the
//! API's own handler (so its checks and messages are the API's).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value};

use super::session::SignedIn;
use super::view::{self, Frame};
use super::{FormFields, see_other};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::{ApiJson, Operator, QueryParams, Tenant};
use crate::api::routes::connections::{self as api, CreateConnection, TestResult};
use crate::api::routes::oauth;
use crate::api::routes::providers::{self, CatalogueFilter, ProviderDto, ProviderStatus};
use crate::db::repo::connections;
use crate::descriptor::model::{ConnectorCategory, CredentialField, FieldType};
use crate::domain::TenantId;
use crate::registry::Entry;

/// The frame of a page that acts for the session's tenant, or the redirect to
/// choose one.
pub fn tenant_frame(
    signed: &SignedIn,
    title: impl Into<String>,
    nav: &'static str,
) -> Result<(Frame, TenantId), Response> {
    let Some(tenant) = signed.tenant() else {
        return Err(see_other("/ui/tenant"));
    };
    let mut frame = Frame::new(title, signed.data.csrf.clone(), true);
    frame.tenant = Some(tenant.to_string());
    frame.nav = nav;
    Ok((frame, tenant))
}

struct Card {
    id: String,
    name: String,
    icon: Option<&'static str>,
    monogram: String,
    description: String,
    category: &'static str,
    status: &'static str,
    status_label: &'static str,
    connections: usize,
    oauth: bool,
}

impl Card {
    fn of(p: ProviderDto) -> Self {
        let (status, status_label) = match p.status {
            Some(ProviderStatus::Connected) => ("connected", "Connected"),
            Some(ProviderStatus::Error) => ("error", "Error"),
            _ => ("not-configured", "Not configured"),
        };
        Card {
            icon: view::icon(&p.icon),
            monogram: view::monogram(&p.name),
            category: p.category.label(),
            status,
            status_label,
            connections: p.connections.unwrap_or(0),
            oauth: p.auth_method == "oauth2",
            id: p.id,
            name: p.name,
            description: p.description,
        }
    }
}

#[derive(Template)]
#[template(path = "catalogue.html")]
struct CataloguePage {
    frame: Frame,
    q: String,
    category: String,
    categories: Vec<(&'static str, &'static str)>,
    cards: Vec<Card>,
    total: usize,
}

/// `GET /ui/catalogue?q=&category=`.
pub async fn catalogue(
    signed: SignedIn,
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Response {
    let (frame, tenant) = match tenant_frame(&signed, "Catalogue", "catalogue") {
        Ok(f) => f,
        Err(r) => return r,
    };
    let q = QueryParams::parse_lenient(query.as_deref());
    let words = q.text("q").unwrap_or_default().trim().to_owned();
    let category = q.text("category").unwrap_or_default().to_owned();
    let filter = CatalogueFilter {
        category: ConnectorCategory::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == category),
        q: (!words.is_empty()).then(|| words.clone()),
    };
    let owned = match connections::list(&state.0.db, tenant).await {
        Ok(c) => c,
        Err(e) => return store_error(&e.into()),
    };
    let cards: Vec<Card> = providers::catalogue(&state, &filter, Some(&owned))
        .into_iter()
        .map(Card::of)
        .collect();
    view::page(
        StatusCode::OK,
        &CataloguePage {
            frame,
            total: state.0.registry.list().len(),
            q: words,
            category,
            categories: ConnectorCategory::ALL
                .iter()
                .map(|c| (c.as_str(), c.label()))
                .collect(),
            cards,
        },
    )
}

/// One input of the setup form.
pub struct FieldView {
    /// The form name (`credentials.token`).
    name: String,
    /// The element id.
    id: String,
    label: String,
    /// The input's `type` (`text`, `password`, `url`) or `select`.
    input: &'static str,
    required: bool,
    placeholder: String,
    help: String,
    /// What was entered (never for a password).
    value: String,
    options: Vec<(String, String, bool)>,
    error: Option<String>,
}

fn field_views(
    section: &str,
    fields: &[CredentialField],
    given: &FormFields,
    errors: &[(String, String)],
) -> Vec<FieldView> {
    fields
        .iter()
        .map(|f| {
            let name = format!("{section}.{}", f.key);
            let value = if f.field_type == FieldType::Password {
                String::new()
            } else {
                given.get(&name).unwrap_or_default().to_owned()
            };
            let mut help = f.help_text.clone().unwrap_or_default();
            if f.field_type == FieldType::List {
                help = format!("{help} Separate several with commas.")
                    .trim()
                    .to_owned();
            }
            if let Some(other) = &f.required_unless {
                help = format!("{help} Required unless {other} is given.")
                    .trim()
                    .to_owned();
            }
            FieldView {
                id: format!("f-{section}-{}", f.key),
                label: f.label.clone(),
                input: match f.field_type {
                    FieldType::Password => "password",
                    FieldType::Url => "url",
                    FieldType::Select => "select",
                    FieldType::Text | FieldType::List => "text",
                },
                required: f.required,
                placeholder: f.placeholder.clone().unwrap_or_default(),
                help,
                options: f
                    .options
                    .iter()
                    .map(|o| {
                        let label = o.label.clone().unwrap_or_else(|| o.value.clone());
                        (o.value.clone(), label, value == o.value)
                    })
                    .collect(),
                error: errors
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, m)| m.clone()),
                value,
                name,
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "test_result.html")]
struct TestView {
    result: Option<TestResult>,
}

#[derive(Template)]
#[template(path = "setup.html")]
struct Setup {
    frame: Frame,
    id: String,
    name: String,
    icon: Option<&'static str>,
    monogram: String,
    description: String,
    category: &'static str,
    oauth: bool,
    credentials: Vec<FieldView>,
    config: Vec<FieldView>,
    label: String,
    label_error: Option<String>,
    error: Option<String>,
    test: TestView,
}

/// The registry entry of `provider`, or the 404 page.
pub fn entry(state: &AppState, provider: &str) -> Result<Entry, Response> {
    state
        .0
        .registry
        .get(provider)
        .ok_or_else(|| view::error_page(StatusCode::NOT_FOUND, "There is no such connector."))
}

/// What a form submission came to, for the form shown again.
pub struct Outcome {
    status: StatusCode,
    /// The message over the form.
    pub error: Option<String>,
    fields: Vec<(String, String)>,
    test: Option<TestResult>,
}

impl Outcome {
    fn blank() -> Self {
        Outcome {
            status: StatusCode::OK,
            error: None,
            fields: Vec::new(),
            test: None,
        }
    }

    /// The API's answer, as messages for the form.
    fn of(e: &ApiError) -> Self {
        let (status, fields) = match e {
            ApiError::BadRequest { details, .. } => (
                StatusCode::BAD_REQUEST,
                details
                    .as_ref()
                    .and_then(|d| d["errors"].as_array())
                    .map(|errors| {
                        errors
                            .iter()
                            .filter_map(|e| {
                                Some((
                                    e["field"].as_str()?.to_owned(),
                                    e["message"].as_str()?.to_owned(),
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, Vec::new()),
            _ => (StatusCode::SERVICE_UNAVAILABLE, Vec::new()),
        };
        let error = if fields.is_empty() {
            match e {
                ApiError::BadRequest { message, .. } | ApiError::Conflict(message) => {
                    message.clone()
                }
                _ => "The request could not be completed; try again.".to_owned(),
            }
        } else {
            "Some fields need attention.".to_owned()
        };
        Outcome {
            status,
            error: Some(error),
            fields,
            test: None,
        }
    }
}

fn setup_page(frame: Frame, entry: &Entry, form: &FormFields, outcome: Outcome) -> Response {
    let c = entry.connector.catalogue();
    let mut frame = frame;
    frame.title = format!("Connect {}", c.name);
    view::page(
        outcome.status,
        &Setup {
            frame,
            id: c.id.clone(),
            name: c.name.clone(),
            icon: view::icon(&c.icon),
            monogram: view::monogram(&c.name),
            description: c.description.clone(),
            category: c.category.label(),
            oauth: entry.connector.capabilities().oauth.is_some(),
            credentials: field_views("credentials", &c.credential_fields, form, &outcome.fields),
            config: field_views("config", &c.config_fields, form, &outcome.fields),
            label: form.get("name").unwrap_or_default().to_owned(),
            label_error: outcome
                .fields
                .iter()
                .find(|(k, _)| k == "name")
                .map(|(_, m)| m.clone()),
            error: outcome.error,
            test: TestView {
                result: outcome.test,
            },
        },
    )
}

/// What every step of the setup flow starts from: the frame (for the
/// session's tenant) and the connector, or the page that answers instead.
fn setup_context(
    signed: &SignedIn,
    state: &AppState,
    provider: &str,
) -> Result<(Frame, TenantId, Entry), Response> {
    let (frame, tenant) = tenant_frame(signed, "Connect", "catalogue")?;
    Ok((frame, tenant, entry(state, provider)?))
}

/// `GET /ui/connect/{provider}`.
pub async fn setup_form(
    signed: SignedIn,
    State(state): State<AppState>,
    Path(provider): Path<String>,
) -> Response {
    match setup_context(&signed, &state, &provider) {
        Ok((frame, _, e)) => setup_page(frame, &e, &FormFields::default(), Outcome::blank()),
        Err(r) => r,
    }
}

/// The API's body for the form's values: `credentials.*` and `config.*`
/// fields (empty ones left out, as not given), and `name`.
fn body_of(provider: &str, form: &FormFields) -> CreateConnection {
    let mut credentials = Map::new();
    let mut config = Map::new();
    let mut name = None;
    for (key, value) in &form.0 {
        if value.trim().is_empty() {
            continue;
        }
        if let Some(k) = key.strip_prefix("credentials.") {
            credentials.insert(k.to_owned(), Value::String(value.clone()));
        } else if let Some(k) = key.strip_prefix("config.") {
            config.insert(k.to_owned(), Value::String(value.clone()));
        } else if key == "name" {
            name = Some(value.clone());
        }
    }
    CreateConnection {
        provider: provider.to_owned(),
        credentials,
        config,
        name,
    }
}

/// `POST /ui/connect/{provider}`: create the connection (its first backfill
/// starts as through the API), then show it.
pub async fn connect(
    signed: SignedIn,
    State(state): State<AppState>,
    Path(provider): Path<String>,
    form: FormFields,
) -> Response {
    let (frame, tenant, entry) = match setup_context(&signed, &state, &provider) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let body = body_of(&provider, &form);
    match api::create(Operator, Tenant(tenant), State(state), ApiJson(body)).await {
        Ok((_, axum::Json(created))) => {
            see_other(&format!("/ui/connections/{}?done=connected", created.id))
        }
        Err(e) => setup_page(frame, &entry, &form, Outcome::of(&e)),
    }
}

/// `POST /ui/connect/{provider}/test`: the connector's health check with the
/// values entered, nothing stored. The page's script asks for the result
/// alone (`X-Poblysh-Fragment`), so the entered secrets stay in the form;
/// without the script the form comes back with the result (secrets to enter
/// again).
pub async fn test(
    signed: SignedIn,
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    form: FormFields,
) -> Response {
    let (frame, tenant, entry) = match setup_context(&signed, &state, &provider) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let outcome = match api::test_unsaved(&state, tenant, body_of(&provider, &form)).await {
        Ok(result) => Outcome {
            test: Some(result),
            ..Outcome::blank()
        },
        Err(e) => Outcome::of(&e),
    };
    if headers.contains_key("x-poblysh-fragment") {
        return match outcome.test {
            Some(result) => view::page(
                StatusCode::OK,
                &TestView {
                    result: Some(result),
                },
            ),
            // The fields' messages belong next to the fields: the whole form.
            None => setup_page(frame, &entry, &form, outcome),
        };
    }
    setup_page(frame, &entry, &form, outcome)
}

#[derive(Template)]
#[template(path = "authorize.html")]
struct Authorize {
    frame: Frame,
    name: String,
    url: String,
}

/// `POST /ui/connect/{provider}/oauth`: start the provider's OAuth flow (as
/// `POST /connect/{provider}`) and send the operator there.
pub async fn oauth(
    signed: SignedIn,
    State(state): State<AppState>,
    Path(provider): Path<String>,
    form: FormFields,
) -> Response {
    let (frame, tenant, entry) = match setup_context(&signed, &state, &provider) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let body = body_of(&provider, &form);
    let request = serde_json::json!({"config": body.config, "name": body.name});
    match authorize(&state, tenant, &entry, frame.clone(), request).await {
        Ok(page) => page,
        Err(e) => setup_page(frame, &entry, &form, e),
    }
}

/// Starts the OAuth flow of `POST /connect/{provider}` with `request`, the
/// provider sending the operator back to the dashboard, and shows the link
/// to the provider; the form's outcome when it cannot start.
pub async fn authorize(
    state: &AppState,
    tenant: TenantId,
    entry: &Entry,
    mut frame: Frame,
    mut request: Value,
) -> Result<Response, Outcome> {
    let provider = entry.connector.id().to_owned();
    let name = entry.connector.catalogue().name.clone();
    // This redirect URI must be registered with the provider's OAuth app,
    // beside the API's.
    if let Some(public) = &state.0.config.public_url {
        request["redirect_uri"] = Value::String(format!(
            "{}/ui/connect/{provider}/callback",
            public.trim_end_matches('/')
        ));
    }
    let started = oauth::start(
        Operator,
        Tenant(tenant),
        State(state.clone()),
        Path(provider),
        Bytes::from(request.to_string()),
    )
    .await
    .map_err(|e| Outcome::of(&e))?;
    let axum::Json(started) = started;
    if !view::linkable(&started.authorize_url) {
        return Err(Outcome {
            status: StatusCode::BAD_GATEWAY,
            error: Some("The provider's authorization URL is not an http(s) URL.".into()),
            ..Outcome::blank()
        });
    }
    frame.title = format!("Continue to {name}");
    Ok(view::page(
        StatusCode::OK,
        &Authorize {
            frame,
            name,
            url: started.authorize_url,
        },
    ))
}

#[derive(Template)]
#[template(path = "connected.html")]
struct Connected {
    frame: Frame,
    /// A re-authorization (the connection existed).
    again: bool,
    name: String,
    id: String,
}

/// `GET /ui/connect/{provider}/callback`: where the provider sends the
/// operator back. Completed as `GET /connect/{provider}/callback` (the
/// single-use state is the credential: the session cookie, `SameSite=Strict`,
/// does not come along on a redirect from another site), then a link into
/// the dashboard, which does.
pub async fn oauth_callback(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    query: RawQuery,
) -> Response {
    let name = state
        .0
        .registry
        .get(&provider)
        .map(|e| e.connector.catalogue().name.clone())
        .unwrap_or_else(|| provider.clone());
    match oauth::callback(State(state), Path(provider), query).await {
        Ok((status, axum::Json(made))) => view::page(
            StatusCode::OK,
            &Connected {
                frame: Frame::new(format!("{name} connected"), String::new(), false),
                again: status == StatusCode::OK,
                name,
                id: made.id.to_string(),
            },
        ),
        Err(e) => {
            let status = match e {
                ApiError::NotFound(_) => StatusCode::NOT_FOUND,
                ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
                _ => StatusCode::BAD_REQUEST,
            };
            view::error_page(status, &format!("{name} was not connected: {e}"))
        }
    }
}

/// A storage failure as a page.
pub fn store_error(e: &ApiError) -> Response {
    tracing::error!(error = %e, "a dashboard page could not be read");
    view::error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The service could not read its data; try again.",
    )
}
