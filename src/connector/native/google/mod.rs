//! What Google's native connectors (Gmail, Drive, Calendar) share: the
//! verification of Google-signed push tokens and the reading of Gmail shapes,
//! so far.

pub mod gmail;
pub mod oidc;
