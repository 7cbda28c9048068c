//! HTTP endpoints: the generic signed webhook, Slack and Alertmanager, over
//! one rustls client each, and how their answers are classified. The
//! bodies of Slack and Alertmanager are in [`super::slack`] and
//! [`super::alertmanager`].
use std::{
    collections::BTreeMap,
    future::Future,
    path::PathBuf,
    pin::Pin,
    time::{Duration, SystemTime},
};

use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

use super::{SecretSource, SinkError, alertmanager::alertmanager_alert, slack::slack_message};

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the batch is acknowledged.
    Delivered,
    /// Connect error, timeout, 408, 429 or 5xx: try again later (`after` from Retry-After).
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// Any other answer: retrying would not help; the batch is dropped and counted.
    Permanent { reason: String },
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A sink endpoint the spooled delivery loop sends batches to.
pub trait Deliver: Send + Sync + 'static {
    /// Most alerts per request.
    fn max_batch(&self) -> usize;
    /// Sends one batch (alert records as compact JSON, oldest first).
    fn send(&self, batch: Vec<Bytes>) -> BoxFuture<Outcome>;
}

/// TLS settings (rustls). The system's CA certificates are trusted, and
/// those of `ca_file` besides; a plain `http://` endpoint needs neither.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Extra CA certificates (PEM bundle) trusted besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS; needs `client_key`.
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    pub client_key: Option<PathBuf>,
}

/// Settings every HTTP sink shares.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    pub url: String,
    /// Extra request headers (e.g. `Authorization`). Put credentials in a
    /// config file readable only by the agent, never on the command line.
    pub headers: BTreeMap<String, String>,
    pub tls: TlsConfig,
    #[serde(with = "crate::alert::duration_str")]
    pub connect_timeout: Duration,
    /// The whole request, connect to last byte of the answer.
    #[serde(with = "crate::alert::duration_str")]
    pub request_timeout: Duration,
    /// Honour `HTTP(S)_PROXY`/`NO_PROXY` from the environment.
    pub use_env_proxy: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            url: String::new(),
            headers: BTreeMap::new(),
            tls: TlsConfig::default(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            use_env_proxy: true,
        }
    }
}

/// How a batch becomes a request body.
#[derive(Clone, Debug)]
pub enum Format {
    /// The alert record itself (batch of 1) or a JSON array of records, in
    /// the sink's output format, signed the Standard Webhooks way when a
    /// secret is set.
    Generic(super::AlertFormat),
    /// A Slack incoming-webhook message (text and blocks), one alert each.
    Slack,
    /// Prometheus Alertmanager v2: a JSON array of alerts.
    Alertmanager { generator_url: Option<String> },
    /// RFC 5424 syslog messages, the record in this format as `MSG` (not
    /// HTTP: see [`super::syslog`]).
    Syslog(super::AlertFormat),
    /// OTLP logs (`/v1/logs`), one log record per alert.
    Otlp(super::otlp::Encoding),
}

/// Standard Webhooks signer (HMAC-SHA256).
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl Signer {
    /// Reads the secret. A `whsec_` prefix is stripped and the rest
    /// base64-decoded, as the Standard Webhooks libraries do; a secret without
    /// the prefix is also taken as base64 when it decodes, else as raw bytes.
    pub fn from_source(source: &SecretSource) -> Result<Signer, SinkError> {
        Signer::from_secret(&source.read()?)
    }

    pub fn from_secret(secret: &str) -> Result<Signer, SinkError> {
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(SinkError::Secret("the webhook secret is empty".into()));
        }
        let key = match secret.strip_prefix("whsec_") {
            Some(b64) => B64.decode(b64).map_err(|e| {
                SinkError::Secret(format!("the part after `whsec_` is not base64 ({e})"))
            })?,
            None => B64
                .decode(secret)
                .unwrap_or_else(|_| secret.as_bytes().to_vec()),
        };
        Ok(Signer { key })
    }

    /// `v1,<base64 HMAC-SHA256 over "{id}.{timestamp}.{body}">`.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }
}

/// One HTTP endpoint.
pub struct HttpTarget {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    format: Format,
    signer: Option<Signer>,
    batch: usize,
    max_retry_after: Duration,
}

impl HttpTarget {
    pub fn new(
        config: &HttpConfig,
        format: Format,
        signer: Option<Signer>,
        batch: usize,
    ) -> Result<HttpTarget, SinkError> {
        let url = reqwest::Url::parse(&config.url)
            .map_err(|e| SinkError::Config(format!("url `{}`: {e}", redact_url(&config.url))))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SinkError::Config(format!(
                "url `{}`: use http:// or https://",
                redact_url(&config.url)
            )));
        }
        if matches!(format, Format::Syslog(_)) {
            return Err(SinkError::Config("syslog is not an HTTP sink".into()));
        }
        let mut headers = HeaderMap::new();
        for (k, v) in &config.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| SinkError::Config(format!("header name `{k}`: {e}")))?;
            let mut value = HeaderValue::from_str(v)
                .map_err(|e| SinkError::Config(format!("header `{k}` value: {e}")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let batch = match format {
            Format::Slack => 1,
            _ => batch.max(1),
        };
        Ok(HttpTarget {
            client: build_client(config, &url)?,
            url,
            headers,
            format,
            signer,
            batch,
            max_retry_after: Duration::from_secs(600),
        })
    }

    /// The request body and the `webhook-id` for a batch.
    pub fn body(&self, batch: &[Bytes]) -> (Vec<u8>, String) {
        let id = |b: &Bytes| {
            serde_json::from_slice::<IdOnly>(b)
                .map(|h| h.id)
                .unwrap_or_default()
        };
        let msg_id = if batch.len() == 1 {
            id(&batch[0])
        } else {
            // Stable for this batch; each alert inside keeps its own id.
            format!("batch-{}-{}", id(&batch[0]), batch.len())
        };
        let body = match &self.format {
            Format::Generic(f) if batch.len() == 1 => f.render_bytes(&batch[0]),
            Format::Generic(f) => {
                let mut v =
                    Vec::with_capacity(batch.iter().map(|b| b.len() + 1).sum::<usize>() + 2);
                v.push(b'[');
                for (i, b) in batch.iter().enumerate() {
                    if i > 0 {
                        v.push(b',');
                    }
                    v.extend_from_slice(&f.render_bytes(b));
                }
                v.push(b']');
                v
            }
            Format::Slack => {
                let alert: Value = serde_json::from_slice(&batch[0]).unwrap_or(Value::Null);
                serde_json::to_vec(&slack_message(&alert)).expect("JSON")
            }
            // Never an HTTP target: refused by `HttpTarget::new`.
            Format::Syslog(_) => Vec::new(),
            Format::Otlp(encoding) => super::otlp::body(batch, *encoding),
            Format::Alertmanager { generator_url } => {
                let alerts: Vec<Value> = batch
                    .iter()
                    .map(|b| {
                        let alert: Value = serde_json::from_slice(b).unwrap_or(Value::Null);
                        alertmanager_alert(&alert, generator_url.as_deref())
                    })
                    .collect();
                serde_json::to_vec(&alerts).expect("JSON")
            }
        };
        (body, msg_id)
    }
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

impl Deliver for HttpTarget {
    fn max_batch(&self) -> usize {
        self.batch
    }

    fn send(&self, batch: Vec<Bytes>) -> BoxFuture<Outcome> {
        let (body, msg_id) = self.body(&batch);
        let mut req = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(
                CONTENT_TYPE,
                match &self.format {
                    Format::Otlp(e) => e.content_type(),
                    _ => "application/json",
                },
            );
        if let Some(signer) = &self.signer {
            // Signed per attempt: receivers reject old timestamps, the id stays.
            let ts = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            req = req
                .header("webhook-id", msg_id.as_str())
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", signer.sign(&msg_id, ts, &body));
        }
        let req = req.body(body);
        let max_retry_after = self.max_retry_after;
        let url = self.url.clone();
        Box::pin(async move {
            match req.send().await {
                Ok(resp) => classify(resp.status(), resp.headers(), max_retry_after),
                Err(e) if e.is_builder() => Outcome::Permanent {
                    reason: format!("building the request: {}", scrub(e, &url)),
                },
                Err(e) => Outcome::Retry {
                    after: None,
                    reason: scrub(e, &url),
                },
            }
        })
    }
}

/// The error chain of a failed request without its URL: reqwest names the
/// full URL in its text, and a webhook URL's path or query is often the
/// credential (Slack's always is). The endpoint is named by host only.
fn scrub(e: reqwest::Error, url: &reqwest::Url) -> String {
    let host = redact_url(url.as_str());
    let mut text = error_chain(&e.without_url());
    // Belt and braces: an inner error that quotes the URL itself.
    for secret in [url.as_str(), url.path(), url.query().unwrap_or("")] {
        if secret.len() > 1 {
            text = text.replace(secret, "...");
        }
    }
    format!("{host}: {text}")
}

/// `https://user:pw@host:8443/path?q` -> `https://host:8443/...`: enough to
/// tell endpoints apart, nothing of the credentials a user part, path or
/// query may hold. Text that is not a URL is not shown at all.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if matches!(u.path(), "" | "/") && u.query().is_none() {
                ""
            } else {
                "/..."
            };
            format!("{}://{host}{port}{rest}", u.scheme())
        }
        Err(_) => "(not a URL)".into(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// 2xx delivered; 408, 429 and 5xx retried (honouring Retry-After, capped at
/// `max_retry_after`); everything else permanent.
pub fn classify(
    status: reqwest::StatusCode,
    headers: &HeaderMap,
    max_retry_after: Duration,
) -> Outcome {
    let code = status.as_u16();
    if status.is_success() {
        Outcome::Delivered
    } else if code == 408 || code == 429 || status.is_server_error() {
        let after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()))
            .map(|d| d.min(max_retry_after));
        Outcome::Retry {
            after,
            reason: format!("endpoint answered {status}"),
        }
    } else {
        Outcome::Permanent {
            reason: format!("endpoint answered {status}"),
        }
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date (IMF-fixdate).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // "Sun, 06 Nov 1994 08:49:37 GMT" -> humantime's RFC 3339 parser.
    let parts: Vec<&str> = value.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months.iter().position(|m| *m == parts[2])? + 1;
    let day: u32 = parts[1].parse().ok()?;
    let year: u32 = parts[3].parse().ok()?;
    let rfc = format!("{year:04}-{month:02}-{day:02}T{}Z", parts[4]);
    let at = humantime::parse_rfc3339(&rfc).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn build_client(config: &HttpConfig, url: &reqwest::Url) -> Result<reqwest::Client, SinkError> {
    let tls = &config.tls;
    let mut extra_roots = Vec::new();
    if let Some(ca) = &tls.ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| SinkError::Config(format!("reading CA file {}: {e}", ca.display())))?;
        extra_roots = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| SinkError::Config(format!("CA file {}: {e}", ca.display())))?;
        // Otherwise a key or a DER file given by mistake trusts nothing, silently.
        if extra_roots.is_empty() {
            return Err(SinkError::Config(format!(
                "CA file {}: no certificate in it; give a PEM file with `-----BEGIN CERTIFICATE-----` blocks",
                ca.display()
            )));
        }
    }
    let identity = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let mut pem = std::fs::read(cert).map_err(|e| {
                SinkError::Config(format!(
                    "reading client certificate {}: {e}",
                    cert.display()
                ))
            })?;
            pem.push(b'\n');
            pem.extend(std::fs::read(key).map_err(|e| {
                SinkError::Config(format!("reading client key {}: {e}", key.display()))
            })?);
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                SinkError::Config(format!(
                    "client certificate {} / key {}: {}",
                    cert.display(),
                    key.display(),
                    error_chain(&e)
                ))
            })?;
            Some(id)
        }
        (None, None) => None,
        _ => {
            return Err(SinkError::Config(
                "tls: set both client_cert and client_key, or neither".into(),
            ));
        }
    };
    let builder = |system_roots: bool| {
        let mut b = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            // A redirected POST silently becomes a GET: treat 3xx as a misconfiguration.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("monitor/", env!("CARGO_PKG_VERSION")));
        if !config.use_env_proxy {
            b = b.no_proxy();
        }
        b = if system_roots {
            b.tls_certs_merge(extra_roots.clone())
        } else {
            b.tls_certs_only(extra_roots.clone())
        };
        if let Some(id) = &identity {
            b = b.identity(id.clone());
        }
        b
    };
    let system = builder(true).build();
    match system {
        Ok(client) => Ok(client),
        // The system's verifier refuses to exist without a single trusted
        // root (a minimal image without a CA bundle). A plain http://
        // endpoint verifies no certificate, so it must not need one.
        Err(_) if url.scheme() == "http" => builder(false)
            .build()
            .map_err(|e| SinkError::Config(format!("HTTP client: {}", error_chain(&e)))),
        Err(e) => {
            let chain = error_chain(&e);
            // reqwest's builder errors carry rustls' and the platform
            // verifier's reasons as text only.
            let hint = if extra_roots.is_empty() && chain.contains("CA certificates") {
                "; install the system's CA certificates (e.g. the ca-certificates package) or set tls.ca_file to the endpoint's CA".to_owned()
            } else if let (true, Some(cert), Some(key)) = (
                chain.contains("KeyMismatch"),
                &tls.client_cert,
                &tls.client_key,
            ) {
                format!(
                    "; tls.client_key {} is not the private key of tls.client_cert {}",
                    key.display(),
                    cert.display()
                )
            } else {
                String::new()
            };
            Err(SinkError::Config(format!("HTTP client: {chain}{hint}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_reference_vector() {
        // The example from the Standard Webhooks specification's test suite.
        let s = Signer::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = s.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn bad_whsec_secret_is_an_error_that_says_what_to_fix() {
        let e = Signer::from_secret("whsec_not*base64").err().unwrap();
        assert!(e.to_string().contains("whsec_"), "{e}");
        assert!(Signer::from_secret("  \n").is_err());
    }

    #[test]
    fn retry_after_seconds_and_http_date() {
        let now = humantime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    /// A webhook URL's path and query are the credential: no error a
    /// failed delivery or a bad setting produces may show them.
    #[tokio::test]
    async fn errors_name_the_host_never_the_path_or_query() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let secret_url =
            format!("http://127.0.0.1:{port}/services/T0/B0/SeCrEtPaTh?token=SeCrEtQuErY");
        let c = HttpConfig {
            url: secret_url.clone(),
            ..Default::default()
        };
        let t = HttpTarget::new(&c, Format::Slack, None, 1).unwrap();
        let out = t.send(vec![Bytes::from_static(br#"{"id":"x"}"#)]).await;
        let Outcome::Retry { reason, .. } = out else {
            panic!("{out:?}")
        };
        assert!(
            reason.starts_with(&format!("http://127.0.0.1:{port}/...: ")),
            "{reason}"
        );
        assert!(!reason.contains("SeCrEt"), "{reason}");
        for bad in [
            "ftp://127.0.0.1/SeCrEtPaTh".to_owned(),
            "https://user:SeCrEtPw@[::1/x".to_owned(),
        ] {
            let c = HttpConfig {
                url: bad,
                ..Default::default()
            };
            let e = HttpTarget::new(
                &c,
                Format::Generic(crate::sink::AlertFormat::Native),
                None,
                1,
            )
            .err()
            .unwrap();
            assert!(!e.to_string().contains("SeCrEt"), "{e}");
        }
        assert_eq!(
            redact_url("https://u:p@hooks.example:8443/a/b?c=d"),
            "https://hooks.example:8443/..."
        );
    }

    #[test]
    fn classification() {
        use reqwest::StatusCode as S;
        let h = HeaderMap::new();
        let max = Duration::from_secs(60);
        assert_eq!(classify(S::NO_CONTENT, &h, max), Outcome::Delivered);
        for s in [
            S::REQUEST_TIMEOUT,
            S::TOO_MANY_REQUESTS,
            S::BAD_GATEWAY,
            S::INTERNAL_SERVER_ERROR,
        ] {
            assert!(matches!(classify(s, &h, max), Outcome::Retry { .. }), "{s}");
        }
        for s in [
            S::BAD_REQUEST,
            S::UNAUTHORIZED,
            S::NOT_FOUND,
            S::MOVED_PERMANENTLY,
        ] {
            assert!(
                matches!(classify(s, &h, max), Outcome::Permanent { .. }),
                "{s}"
            );
        }
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("3600"));
        assert_eq!(
            classify(S::TOO_MANY_REQUESTS, &h, max),
            Outcome::Retry {
                after: Some(max),
                reason: "endpoint answered 429 Too Many Requests".into()
            }
        );
    }

    #[test]
    fn tls_settings_errors_name_what_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let mut c = HttpConfig {
            url: "https://127.0.0.1:1/hook".into(),
            ..Default::default()
        };
        c.tls.ca_file = Some(dir.path().join("missing.pem"));
        let e = HttpTarget::new(
            &c,
            Format::Generic(crate::sink::AlertFormat::Native),
            None,
            1,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("missing.pem"), "{e}");
        c.tls.ca_file = None;
        c.tls.client_cert = Some(ca.clone());
        let e = HttpTarget::new(
            &c,
            Format::Generic(crate::sink::AlertFormat::Native),
            None,
            1,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("client_key"), "{e}");
        c.tls.client_cert = None;
        assert!(
            HttpTarget::new(
                &c,
                Format::Generic(crate::sink::AlertFormat::Native),
                None,
                1
            )
            .is_ok()
        );
        c.url = "ftp://127.0.0.1/".into();
        let e = HttpTarget::new(
            &c,
            Format::Generic(crate::sink::AlertFormat::Native),
            None,
            1,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("http://"), "{e}");
    }
}
