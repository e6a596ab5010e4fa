//! Google's native connectors and what they share: the OAuth app (`app`),
//! calls to Google's APIs (`api`), the verification of Google-signed push
//! tokens (`oidc`), and Gmail (`gmail`: its shapes and mapping;
//! `gmail_connector`: the connector).

pub mod api;
pub mod app;
pub mod gmail;
pub mod gmail_connector;
pub mod oidc;
