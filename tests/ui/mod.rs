//! The dashboard: in a real browser (`browser`), and its security properties
//! over HTTP (`security`: CSRF, sessions, headers, no secret in any page).

mod browser;
mod security;
