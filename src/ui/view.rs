//! What the dashboard's pages are made of: the askama templates (compiled in,
//! HTML auto-escaped), the frame every page shares (title, tenant, CSRF token),
//! and small view helpers (relative times, health, monograms).

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};

use crate::api::error::NotAProblem;

/// The frame of a page.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    /// Title (before " · Poblysh Connectors").
    pub title: String,
    /// The session's CSRF token (forms carry it; scripts send it as a header).
    pub csrf: String,
    /// Whether the operator is signed in (shows the navigation).
    pub signed_in: bool,
    /// The tenant the pages act for.
    pub tenant: Option<String>,
    /// Which navigation entry is current.
    pub nav: &'static str,
    /// The crate version (cache-busts the assets).
    pub version: &'static str,
}

impl Frame {
    /// A frame titled `title`.
    pub fn new(title: impl Into<String>, csrf: String, signed_in: bool) -> Self {
        Frame {
            title: title.into(),
            csrf,
            signed_in,
            version: env!("CARGO_PKG_VERSION"),
            ..Default::default()
        }
    }
}

/// A rendered page (or fragment) as a response: `text/html`, never cached.
pub fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => {
            let mut response =
                (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response();
            response.extensions_mut().insert(NotAProblem);
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "a dashboard template failed");
            let mut response = (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response();
            response.extensions_mut().insert(NotAProblem);
            response
        }
    }
}

/// An error page with `message` (text, escaped).
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    /// The frame.
    pub frame: Frame,
    /// What went wrong.
    pub message: String,
}

/// An error page outside a session's context.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    page(
        status,
        &ErrorPage {
            frame: Frame::new(
                status.canonical_reason().unwrap_or("Error"),
                String::new(),
                false,
            ),
            message: message.to_owned(),
        },
    )
}

/// A moment, shown relative to now with the exact time on hover.
#[derive(Debug, Clone)]
pub struct When {
    /// RFC 3339 (the `datetime` attribute; scripts keep the text current).
    pub iso: String,
    /// The exact time, for the tooltip.
    pub exact: String,
    /// "3 minutes ago".
    pub relative: String,
}

/// `t` relative to `now`.
pub fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> When {
    When {
        iso: t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        exact: t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        relative: relative(now - t),
    }
}

/// "just now", "5 minutes ago", "in 2 hours", … (as app.js words them).
pub fn relative(ago: chrono::Duration) -> String {
    let (secs, future) = if ago.num_seconds() < 0 {
        (-ago.num_seconds(), true)
    } else {
        (ago.num_seconds(), false)
    };
    if secs < 45 {
        return "just now".into();
    }
    let (n, unit) = match secs {
        s if s < 3_600 => ((s + 30) / 60, "minute"),
        s if s < 86_400 => ((s + 1_800) / 3_600, "hour"),
        s if s < 30 * 86_400 => ((s + 43_200) / 86_400, "day"),
        s if s < 365 * 86_400 => (s / (30 * 86_400), "month"),
        s => (s / (365 * 86_400), "year"),
    };
    let n = n.max(1);
    let plural = if n == 1 { "" } else { "s" };
    if future {
        format!("in {n} {unit}{plural}")
    } else {
        format!("{n} {unit}{plural} ago")
    }
}

/// Up to two letters for a provider's icon tile ("GitHub" → "GH",
/// "Zoho Cliq" → "ZC", "Slack" → "Sl").
pub fn monogram(name: &str) -> String {
    let words: Vec<&str> = name.split_whitespace().collect();
    if words.len() >= 2 {
        return words
            .iter()
            .take(2)
            .filter_map(|w| w.chars().next())
            .flat_map(char::to_uppercase)
            .collect();
    }
    let capitals: String = name.chars().filter(|c| c.is_uppercase()).take(2).collect();
    if capitals.chars().count() == 2 {
        return capitals;
    }
    let mut chars = name.chars();
    let first: String = chars
        .next()
        .into_iter()
        .flat_map(char::to_uppercase)
        .collect();
    first + &chars.next().map(String::from).unwrap_or_default()
}

/// The icons the catalogue can show (`assets/icons/`, see its README).
const ICONS: &[(&str, &str)] = &[
    ("activity", include_str!("assets/icons/activity.svg")),
    ("book-open", include_str!("assets/icons/book-open.svg")),
    ("bug", include_str!("assets/icons/bug.svg")),
    ("calendar", include_str!("assets/icons/calendar.svg")),
    ("github", include_str!("assets/icons/github.svg")),
    ("hard-drive", include_str!("assets/icons/hard-drive.svg")),
    ("kanban", include_str!("assets/icons/kanban.svg")),
    ("linear", include_str!("assets/icons/linear.svg")),
    ("mail", include_str!("assets/icons/mail.svg")),
    (
        "messages-square",
        include_str!("assets/icons/messages-square.svg"),
    ),
    ("notebook", include_str!("assets/icons/notebook.svg")),
    ("siren", include_str!("assets/icons/siren.svg")),
    ("trello", include_str!("assets/icons/trello.svg")),
];

/// The inline SVG of a descriptor's `icon`, when the dashboard has one by
/// that name (else the page shows a monogram).
pub fn icon(name: &str) -> Option<&'static str> {
    ICONS.iter().find(|(n, _)| *n == name).map(|(_, svg)| *svg)
}

/// Whether `url` may be a link on a page (http or https only: never
/// `javascript:` or `data:` from a provider's payload).
pub fn linkable(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        let d = chrono::Duration::seconds;
        assert_eq!(relative(d(10)), "just now");
        assert_eq!(relative(d(60)), "1 minute ago");
        assert_eq!(relative(d(150)), "3 minutes ago");
        assert_eq!(relative(d(7_200)), "2 hours ago");
        assert_eq!(relative(d(3 * 86_400)), "3 days ago");
        assert_eq!(relative(d(-7_200)), "in 2 hours");
    }

    #[test]
    fn monograms_and_links() {
        assert_eq!(monogram("GitHub"), "GH");
        assert_eq!(monogram("Zoho Cliq"), "ZC");
        assert_eq!(monogram("Slack"), "Sl");
        assert_eq!(monogram("PagerDuty"), "PD");
        assert!(linkable("https://github.com/o/r/issues/1"));
        assert!(!linkable("javascript:alert(1)"));
        assert!(!linkable("data:text/html,<script>"));
    }

    #[test]
    fn every_icon_is_an_svg_that_cannot_run_anything() {
        for (name, svg) in ICONS {
            assert!(svg.contains("<svg aria-hidden=\"true\""), "{name}");
            assert!(!svg.contains("<script") && !svg.contains(" on"), "{name}");
        }
        assert!(icon("github").is_some() && icon("no-such-icon").is_none());
    }
}
