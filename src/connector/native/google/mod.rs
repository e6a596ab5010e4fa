//! Google's native connectors and what they share: the OAuth app (`app`),
//! calls to Google's APIs (`api`) and reading their pages (`paging`), config and answer values (`values`), the
//! verification of Google-signed push tokens (`oidc`), watch channels
//! (`channel`, and `watched`: a connector fed by them). Gmail (`gmail`: its
//! shapes and mapping; `gmail_connector`), Drive (`drive`) and Calendar
//! (`calendar`).

pub mod api;
pub mod app;
pub mod calendar;
pub mod channel;
pub mod drive;
pub mod gmail;
pub mod gmail_connector;
pub mod oidc;
pub mod paging;
pub mod values;
pub mod watched;
