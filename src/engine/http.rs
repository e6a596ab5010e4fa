//! The one outbound HTTP client: timeouts, retries with exponential backoff and
//! jitter, `429`/`503 + Retry-After` as a typed rate-limit error, per-connection
//! request rates, and the SSRF guard: hosts that resolve to loopback, private,
//! link-local, unique-local or cloud-metadata addresses are refused (after DNS
//! resolution, and on every redirect) unless private networks are allowed.
//!
//! Errors never show a URL's query string (it may carry an API key).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{HeaderMap, Method};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use crate::domain::{Ambient, Backoff, Scrubber};

/// Longest error body kept in an error message.
const ERROR_BODY_LIMIT: usize = 300;
/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;
/// Wait assumed for a 429 without `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Whether private networks may be reached (tests and on-premise deployments set
/// `POBLYSH_ALLOW_PRIVATE_NETWORKS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// Allow loopback, private, link-local and metadata addresses.
    pub allow_private: bool,
}

/// Why an address may not be reached, or `None` when it may.
pub fn blocked_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("a loopback address")
            } else if o == [169, 254, 169, 254] || o == [100, 100, 100, 200] {
                Some("a cloud metadata address")
            } else if v4.is_link_local() {
                Some("a link-local address")
            } else if v4.is_private() || (o[0] == 100 && (64..128).contains(&o[1])) {
                Some("a private address")
            } else if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() || o[0] == 0 {
                Some("not a routable unicast address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                return Some("a loopback address");
            }
            if v6.is_unspecified() {
                return Some("not a routable unicast address");
            }
            // IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`)
            // addresses reach the IPv4 address inside them.
            if let Some(v4) = v6.to_ipv4() {
                return blocked_reason(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            if seg == [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254] {
                Some("a cloud metadata address")
            } else if (seg[0] & 0xffc0) == 0xfe80 {
                Some("a link-local address")
            } else if (seg[0] & 0xfe00) == 0xfc00 {
                Some("a unique-local (private) address")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("not a routable unicast address")
            } else {
                None
            }
        }
    }
}

/// An outbound request failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The SSRF guard refused the destination.
    #[error(
        "refused to connect to {host}: it is {reason} (set POBLYSH_ALLOW_PRIVATE_NETWORKS to allow private networks)"
    )]
    Blocked {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
    /// The URL cannot be requested.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The provider asks to slow down.
    #[error("rate limited by {host}: retry after {} s", retry_after.as_secs())]
    RateLimited {
        /// The host.
        host: String,
        /// How long to wait.
        retry_after: Duration,
    },
    /// An error status after the allowed attempts.
    #[error("{method} {url} answered {status}: {body}")]
    Status {
        /// Method.
        method: String,
        /// URL without its query.
        url: String,
        /// Status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The response body is larger than the request allows.
    #[error(
        "{method} {url}: the response is larger than the {limit}-byte limit (`maxResponseBytes`)"
    )]
    TooLarge {
        /// Method.
        method: String,
        /// URL without its query.
        url: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// No answer in time, or the connection failed, after the allowed attempts.
    #[error("{method} {url} failed: {reason}")]
    Transport {
        /// Method.
        method: String,
        /// URL without its query.
        url: String,
        /// What happened.
        reason: String,
    },
}

impl HttpError {
    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A URL as shown in errors and logs: no query, no credentials.
pub fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    shown.to_string()
}

/// Which failures are retried, how often and how fast.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Statuses retried.
    pub statuses: Vec<u16>,
    /// Attempts in total.
    pub max_attempts: u32,
    /// First backoff.
    pub initial_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            statuses: vec![500, 502, 503, 504],
            max_attempts: 3,
            initial_backoff: Duration::from_millis(500),
        }
    }
}

/// An outbound request.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// Method.
    pub method: Method,
    /// URL (query included).
    pub url: Url,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Option<Vec<u8>>,
    /// Overall timeout.
    pub timeout: Duration,
    /// Largest response body read, in bytes: a larger one is an error, read no
    /// further than the limit.
    pub max_response_bytes: usize,
    /// The secrets the request carries (added by whoever puts them in): an
    /// error body that repeats one shows `[redacted]` instead.
    pub secrets: Scrubber,
    /// Keep only the first `max_response_bytes` of a larger body instead of
    /// failing (when only the status matters).
    pub truncate_response: bool,
}

/// The response body limit of a request that sets none.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 << 20;

impl HttpRequest {
    /// A request with no headers or body, a 30 s timeout and the default
    /// response limit.
    pub fn new(method: Method, url: Url) -> Self {
        HttpRequest {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            timeout: Duration::from_secs(30),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            secrets: Scrubber::default(),
            truncate_response: false,
        }
    }
}

/// A response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// The final URL (after redirects).
    pub url: Url,
}

/// Resolves names and refuses disallowed addresses.
#[derive(Debug, Clone, Copy)]
struct GuardedResolver {
    policy: NetworkPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !policy.allow_private
                && let Some((ip, reason)) = addrs
                    .iter()
                    .find_map(|a| blocked_reason(a.ip()).map(|r| (a.ip(), r)))
            {
                return Err(Box::new(HttpError::Blocked {
                    host: format!("{host} ({ip})"),
                    reason: reason.to_owned(),
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Checks a URL before connecting: http(s) only, and an IP-literal host must
/// be allowed (names are checked by the resolver).
pub fn check_url(url: &Url, policy: NetworkPolicy) -> Result<(), HttpError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(HttpError::InvalidUrl(format!(
            "`{}` is not http or https",
            url.scheme()
        )));
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        Some(url::Host::Domain(d)) => {
            // A name is the same with or without its final dot, in any case.
            let name = d.trim_end_matches('.').to_ascii_lowercase();
            if !policy.allow_private && (name == "localhost" || name.ends_with(".localhost")) {
                return Err(HttpError::Blocked {
                    host: d.to_owned(),
                    reason: "a loopback address".into(),
                });
            }
            return Ok(());
        }
        None => return Err(HttpError::InvalidUrl("no host".into())),
    };
    match blocked_reason(ip) {
        Some(reason) if !policy.allow_private => Err(HttpError::Blocked {
            host: ip.to_string(),
            reason: reason.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Makes `ring` the process's TLS crypto provider (once; needed before any
/// `reqwest` client is built).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The shared client.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    policy: NetworkPolicy,
    limits: Arc<Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>>,
    ambient: Ambient,
}

impl HttpClient {
    /// A client with the given network policy.
    pub fn new(policy: NetworkPolicy) -> Self {
        HttpClient::build(policy, true)
    }

    /// A client that follows no redirect (a 3xx is the answer): push
    /// deliveries, where a redirected POST would arrive as a bodiless GET
    /// whose 2xx must not count as taken.
    pub fn without_redirects(policy: NetworkPolicy) -> Self {
        HttpClient::build(policy, false)
    }

    fn build(policy: NetworkPolicy, follow: bool) -> Self {
        install_crypto_provider();
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if !follow {
                return attempt.stop();
            }
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error("too many redirects");
            }
            // A redirect to another origin would carry the request's own
            // credential headers (an API key, an app token) there.
            if attempt
                .previous()
                .first()
                .is_some_and(|first| first.origin() != attempt.url().origin())
            {
                let to = display_url(attempt.url());
                return attempt.error(format!(
                    "refused to follow a redirect to another host ({to})"
                ));
            }
            match check_url(attempt.url(), policy) {
                Ok(()) => attempt.follow(),
                Err(e) => attempt.error(e),
            }
        });
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver { policy }))
            .redirect(redirect)
            .connect_timeout(Duration::from_secs(10))
            .no_proxy()
            .user_agent(concat!("poblysh-connectors/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client configuration is valid");
        HttpClient {
            client,
            policy,
            limits: Arc::default(),
            ambient: Ambient::system(),
        }
    }

    /// The same client under another clock and randomness (its retry backoff
    /// and `Retry-After` dates follow them).
    #[must_use]
    pub fn with_ambient(mut self, ambient: Ambient) -> Self {
        self.ambient = ambient;
        self
    }

    /// The clock and randomness it runs on.
    pub fn ambient(&self) -> &Ambient {
        &self.ambient
    }

    /// The network policy.
    pub fn policy(&self) -> NetworkPolicy {
        self.policy
    }

    /// Waits until `key` (a connector and connection) may send another request
    /// under `rpm` requests per minute.
    pub async fn throttle(&self, key: &str, rpm: u32) {
        let limiter = {
            let mut limits = self.limits.lock().unwrap_or_else(|e| e.into_inner());
            limits
                .entry(key.to_owned())
                .or_insert_with(|| {
                    let rpm = NonZeroU32::new(rpm.max(1)).expect("at least 1");
                    Arc::new(RateLimiter::direct(Quota::per_minute(rpm)))
                })
                .clone()
        };
        limiter.until_ready().await;
    }

    /// Sends once; no retries.
    pub async fn send_once(&self, request: &HttpRequest) -> Result<HttpResponse, HttpError> {
        check_url(&request.url, self.policy)?;
        let shown = display_url(&request.url);
        let mut builder = self
            .client
            .request(request.method.clone(), request.url.clone())
            .headers(request.headers.clone())
            .timeout(request.timeout);
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let transport = |e: reqwest::Error| {
            // The guard's own error, if it is the cause.
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if let Some(blocked) = s.downcast_ref::<HttpError>() {
                    return blocked.clone();
                }
                source = s.source();
            }
            HttpError::Transport {
                method: request.method.to_string(),
                url: shown.clone(),
                reason: if e.is_timeout() {
                    format!("no answer within {} s", request.timeout.as_secs())
                } else if e.is_connect() {
                    "cannot connect".into()
                } else if e.is_redirect() {
                    // The policy's own reason (no query, no credentials in it).
                    match std::error::Error::source(&e) {
                        Some(why) => format!("redirect refused: {why}"),
                        None => "redirect refused".into(),
                    }
                } else {
                    e.without_url().to_string()
                },
            }
        };
        let mut response = builder.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let url = response.url().clone();
        let limit = request.max_response_bytes;
        let too_large = || HttpError::TooLarge {
            method: request.method.to_string(),
            url: shown.clone(),
            limit,
        };
        if !request.truncate_response && response.content_length().is_some_and(|n| n > limit as u64)
        {
            return Err(too_large());
        }
        // Counted while read: a body without (or lying about) its length stops
        // at the limit.
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > limit {
                if request.truncate_response {
                    body.extend_from_slice(&chunk[..limit - body.len()]);
                    break;
                }
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let body = body.freeze();
        Ok(HttpResponse {
            status,
            headers,
            body,
            url,
        })
    }

    /// Sends with retries: statuses in `retry.statuses` and transport failures are
    /// retried with backoff; `429`, and `503` with `Retry-After`, are returned as
    /// `RateLimited`; other error statuses as `Status`.
    pub async fn send(
        &self,
        request: &HttpRequest,
        retry: &RetryPolicy,
    ) -> Result<HttpResponse, HttpError> {
        let host = request.url.host_str().unwrap_or_default().to_owned();
        let mut attempt = 1;
        loop {
            let last = attempt >= retry.max_attempts;
            match self.send_once(request).await {
                Ok(r) if r.status < 400 => return Ok(r),
                Ok(r) => {
                    let retry_after = retry_after(&r.headers, self.ambient.now());
                    if r.status == 429 || (r.status == 503 && retry_after.is_some()) {
                        return Err(HttpError::RateLimited {
                            host,
                            retry_after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
                        });
                    }
                    if last || !retry.statuses.contains(&r.status) {
                        return Err(HttpError::Status {
                            method: request.method.to_string(),
                            url: display_url(&request.url),
                            status: r.status,
                            body: request.secrets.scrub(&snippet(&r.body)),
                        });
                    }
                }
                Err(e @ HttpError::Transport { .. }) if !last => {
                    tracing::debug!(error = %e, attempt, "retrying");
                }
                Err(e) => return Err(e),
            }
            let backoff = Backoff::new(retry.initial_backoff).delay(attempt, &self.ambient);
            self.ambient.sleep(backoff).await;
            attempt += 1;
        }
    }
}

/// `Retry-After` as seconds or an HTTP date (the wait from `now`).
pub fn retry_after(headers: &HeaderMap, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.to_utc() - now;
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// The start of a provider's answer, for an error message: at most
/// `ERROR_BODY_LIMIT` characters, control characters left out.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(ERROR_BODY_LIMIT)
        .collect();
    if text.chars().count() > ERROR_BODY_LIMIT {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_and_metadata_addresses_are_blocked() {
        for blocked in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::10.0.0.1",
            "::169.254.169.254",
            "224.0.0.1",
            "::",
        ] {
            assert!(blocked_reason(ip(blocked)).is_some(), "{blocked}");
        }
        for allowed in ["140.82.112.3", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert_eq!(blocked_reason(ip(allowed)), None, "{allowed}");
        }
    }

    #[test]
    fn literal_urls_are_checked_before_connecting() {
        let strict = NetworkPolicy::default();
        let open = NetworkPolicy {
            allow_private: true,
        };
        for url in [
            "http://127.0.0.1:8080/x",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://localhost/",
            "http://api.localhost/",
            "http://[::127.0.0.1]/",
            "http://LOCALHOST./",
            "http://Api.LocalHost./",
        ] {
            let url = Url::parse(url).unwrap();
            assert!(
                matches!(check_url(&url, strict), Err(HttpError::Blocked { .. })),
                "{url}"
            );
            assert!(check_url(&url, open).is_ok(), "{url}");
        }
        assert!(check_url(&Url::parse("https://api.github.com/").unwrap(), strict).is_ok());
        assert!(matches!(
            check_url(&Url::parse("file:///etc/passwd").unwrap(), open),
            Err(HttpError::InvalidUrl(_))
        ));
    }

    /// A body sent without a length (chunked) is counted as it is read and
    /// cut off at the limit.
    #[tokio::test]
    async fn a_body_without_a_length_stops_at_the_limit() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\n";
            socket.write_all(head.as_bytes()).await.unwrap();
            let chunk = vec![b'x'; 8192];
            // Up to 8 MiB, unless the client hangs up first.
            for _ in 0..1024 {
                let size = format!("{:x}\r\n", chunk.len());
                if socket.write_all(size.as_bytes()).await.is_err()
                    || socket.write_all(&chunk).await.is_err()
                    || socket.write_all(b"\r\n").await.is_err()
                {
                    return;
                }
            }
            let _ = socket.write_all(b"0\r\n\r\n").await;
        });
        let client = HttpClient::new(NetworkPolicy {
            allow_private: true,
        });
        let mut request =
            HttpRequest::new(Method::GET, format!("http://{addr}/big").parse().unwrap());
        request.max_response_bytes = 64 * 1024;
        let e = client.send_once(&request).await.unwrap_err();
        assert!(
            matches!(e, HttpError::TooLarge { limit, .. } if limit == 64 * 1024),
            "{e}"
        );
        server.abort();
    }

    /// A redirect stays on the request's origin (another port is another
    /// origin); one on the same origin is followed.
    #[tokio::test]
    async fn a_redirect_to_another_origin_is_refused() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        async fn serve(answer: impl Fn(u16) -> String + Send + 'static) -> u16 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    let mut buf = [0u8; 2048];
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    let path = String::from_utf8_lossy(&buf[..n])
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("/")
                        .to_owned();
                    let reply = if path == "/here" {
                        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_owned()
                    } else {
                        answer(port)
                    };
                    let _ = socket.write_all(reply.as_bytes()).await;
                }
            });
            port
        }
        let other = serve(|_| "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".into()).await;
        let redirect = |to: String| {
            format!("HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\n\r\n")
        };
        let away = serve(move |_| redirect(format!("http://127.0.0.1:{other}/"))).await;
        let home = serve(move |port| redirect(format!("http://127.0.0.1:{port}/here"))).await;
        let client = HttpClient::new(NetworkPolicy {
            allow_private: true,
        });
        let get = |port: u16| {
            HttpRequest::new(
                Method::GET,
                format!("http://127.0.0.1:{port}/start").parse().unwrap(),
            )
        };
        let e = client.send_once(&get(away)).await.unwrap_err();
        assert!(e.to_string().contains("another host"), "{e}");
        assert_eq!(client.send_once(&get(home)).await.unwrap().status, 200);
    }

    #[test]
    fn shown_urls_hide_queries_and_credentials() {
        let url = Url::parse("https://user:pw@api.example.com/v1/items?api_key=secret#x").unwrap();
        assert_eq!(display_url(&url), "https://api.example.com/v1/items");
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now: chrono::DateTime<chrono::Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let retry_after = |h: &HeaderMap| retry_after(h, now);
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a past date means now"
        );
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
        // A date is a wait from the injected now.
        h.insert(
            "retry-after",
            "Tue, 01 Dec 2026 00:00:30 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(30)));
    }
}
