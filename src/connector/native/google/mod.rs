//! What Google's native connectors (Gmail, Drive, Calendar) share: the
//! verification of Google-signed push tokens, so far.

pub mod oidc;
