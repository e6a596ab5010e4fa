//! The dashboard: in a real browser (`browser`), and its security properties
//! over HTTP (`security`: CSRF, sessions, headers, no secret in any page);
//! `Browser` is a cookie- and CSRF-keeping client of the in-process router.

mod browser;
mod security;
mod subscriptions;

use axum::body::Body;
use http::Request;
use uuid::Uuid;

use crate::sync::harness::{Node, TOKEN};

/// A browser's view of the dashboard: its session cookie and CSRF token.
pub struct Browser<'a> {
    node: &'a Node,
    /// The session cookie's value.
    pub cookie: Option<String>,
    /// The sign-in form's CSRF cookie's value.
    pub login: Option<String>,
    pub csrf: String,
}

pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl<'a> Browser<'a> {
    pub fn new(node: &'a Node) -> Self {
        Browser {
            node,
            cookie: None,
            login: None,
            csrf: String::new(),
        }
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        form: Option<&[(&str, &str)]>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        let mut jar = Vec::new();
        if let Some(c) = &self.cookie {
            jar.push(format!("poblysh_session={c}"));
        }
        if let Some(c) = &self.login {
            jar.push(format!("poblysh_login={c}"));
        }
        if !jar.is_empty() {
            req = req.header("cookie", jar.join("; "));
        }
        let req = match form {
            Some(fields) => req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(
                    url::form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(fields)
                        .finish(),
                )),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let (status, headers, body) = self.node.send(req).await;
        for value in headers.get_all("set-cookie") {
            let value = value.to_str().unwrap();
            let kept = |rest: &str| {
                let v = rest.split(';').next().unwrap();
                (!v.is_empty() && !value.contains("Max-Age=0")).then(|| v.to_owned())
            };
            if let Some(rest) = value.strip_prefix("poblysh_session=") {
                self.cookie = kept(rest);
            } else if let Some(rest) = value.strip_prefix("poblysh_login=") {
                self.login = kept(rest);
            }
        }
        let body = String::from_utf8(body).unwrap();
        if let Some(i) = body.find("name=\"csrf-token\" content=\"") {
            let rest = &body[i + 27..];
            let token = &rest[..rest.find('"').unwrap()];
            // An error page outside the session carries none.
            if !token.is_empty() {
                self.csrf = token.to_owned();
            }
        }
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        self.request("GET", path, None).await
    }

    /// A form with the page's CSRF token.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let csrf = self.csrf.clone();
        let mut all = vec![("_csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.request("POST", path, Some(&all)).await
    }

    pub async fn sign_in(&mut self, tenant: Uuid) {
        self.get("/ui/login").await;
        let a = self.post("/ui/login", &[("token", TOKEN)]).await;
        assert_eq!(a.status, 303, "{}", a.body);
        let a = self.get("/ui/tenant").await;
        assert_eq!(a.status, 200, "{:?} {}", a.headers, a.body);
        let a = self
            .post("/ui/tenant", &[("tenant", &tenant.to_string())])
            .await;
        assert_eq!(a.status, 303, "{}", a.body);
        self.get("/ui/connections").await;
    }
}
