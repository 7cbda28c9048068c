//! Syslog (RFC 5424) over UDP, TCP or TLS, for SIEMs and log pipelines.
//!
//! Each alert is one RFC 5424 message (formatted by `fasyslog`): facility
//! `local0`, the severity mapped from the alert's, `HOSTNAME` the alert's
//! host, `APP-NAME` `monitor`, `MSGID` `alert`, structured data
//! `[monitor@32473 id= rule= severity= kind= container= pod= namespace=]`
//! (the parts that are known), and the alert record itself as `MSG`.
//! 32473 is the private enterprise number RFC 5612 reserves for
//! documentation; receivers match on the SD-ID as a whole.
//!
//! Framing: TCP and TLS use octet counting (RFC 6587 §3.4.1, `LEN SP MSG`),
//! which needs no escaping and survives newlines; UDP sends one message per
//! datagram (RFC 5426), so a record longer than a datagram is lost to UDP:
//! prefer TCP or TLS.
//!
//! Delivery: a stream is "delivered" once written and flushed; a write
//! error drops the connection, the batch is retried on a new one from the
//! spool (so a receiver can get a batch twice; it de-duplicates on `id`).
use std::{path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use fasyslog::{Facility, SDElement, Severity as SyslogSeverity, format::SyslogContext};
use serde_json::Value;
use tokio::{
    io::{AsyncWrite, AsyncWriteExt as _},
    net::{TcpStream, UdpSocket},
    sync::Mutex,
};
use tokio_rustls::{
    TlsConnector,
    rustls::{
        self, ClientConfig, RootCertStore,
        pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _},
    },
};

use super::{
    AlertFormat, SinkError,
    http::{BoxFuture, Deliver, HttpConfig, Outcome, redact_url},
};

/// The structured-data id of the alert's facts.
pub const SD_ID: &str = "monitor@32473";

/// The transport of a syslog sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// Parses `udp://host:port`, `tcp://host:port` or `tls://host:port`.
pub fn parse_url(url: &str) -> Result<(Transport, String, u16), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "write `udp://`, `tcp://` or `tls://` and `host:port`".to_owned())?;
    let transport = match scheme {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        other => return Err(format!("scheme `{other}`: use udp://, tcp:// or tls://")),
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| "give the port: `host:514` (UDP, TCP) or `host:6514` (TLS)".to_owned())?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port `{port}` is not a number from 1 to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains('/') || host.contains('@') {
        return Err("give a host name or address, without a path or user".into());
    }
    Ok((transport, host.to_owned(), port))
}

/// One alert record as an RFC 5424 message, the record in `format` as `MSG`
/// (the structured data always comes from the native record).
pub fn format_message(record: &[u8], format: AlertFormat) -> String {
    let a: Value = serde_json::from_slice(record).unwrap_or(Value::Null);
    let text = |k: &[&str]| {
        let mut cur = &a;
        for p in k {
            cur = cur.get(p).unwrap_or(&Value::Null);
        }
        cur.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
    };
    let severity = match text(&["severity"]).as_deref() {
        Some("critical") => SyslogSeverity::CRITICAL,
        Some("high") => SyslogSeverity::ERROR,
        Some("medium") => SyslogSeverity::WARNING,
        Some("low") => SyslogSeverity::NOTICE,
        _ => SyslogSeverity::INFORMATIONAL,
    };
    let mut ctx = SyslogContext::new();
    ctx.facility(Facility::LOCAL0).appname("monitor");
    ctx.procid(std::process::id().to_string());
    if let Some(host) = text(&["host"]) {
        // HOSTNAME is 1*255 PRINTUSASCII.
        let h: String = host
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(255)
            .collect();
        if !h.is_empty() {
            ctx.hostname(h);
        }
    }
    let mut sd = SDElement::new(SD_ID).expect("a valid SD-ID");
    let container = text(&["container", "name"]).or_else(|| text(&["container", "id"]));
    for (name, value) in [
        ("id", text(&["id"])),
        ("rule", text(&["rule"])),
        ("severity", text(&["severity"])),
        ("kind", text(&["kind"])),
        ("container", container),
        ("pod", text(&["container", "pod"])),
        ("namespace", text(&["container", "namespace"])),
    ] {
        if let Some(v) = value {
            // The crate escapes `"`, `\` and `]` in values.
            let _ = sd.add_param(name, v);
        }
    }
    let msg = match format {
        AlertFormat::Native => String::from_utf8_lossy(record).into_owned(),
        f => String::from_utf8_lossy(&f.render_bytes(record)).into_owned(),
    };
    ctx.format_rfc5424(severity, Some("alert"), vec![sd], Some(msg))
        .to_string()
}

/// `LEN SP MSG` (RFC 6587 octet counting).
pub fn octet_counted(msg: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(msg.len() + 8);
    v.extend_from_slice(msg.len().to_string().as_bytes());
    v.push(b' ');
    v.extend_from_slice(msg.as_bytes());
    v
}

trait Stream: AsyncWrite + Unpin + Send {}
impl<T: AsyncWrite + Unpin + Send> Stream for T {}

/// A syslog receiver.
pub struct SyslogTarget {
    transport: Transport,
    host: String,
    port: u16,
    shown: String,
    tls: Option<TlsConnector>,
    connect_timeout: Duration,
    request_timeout: Duration,
    batch: usize,
    format: AlertFormat,
    conn: Arc<Mutex<Option<Box<dyn Stream>>>>,
    udp: Arc<Mutex<Option<UdpSocket>>>,
}

impl SyslogTarget {
    pub fn new(
        config: &HttpConfig,
        batch: usize,
        format: AlertFormat,
    ) -> Result<SyslogTarget, SinkError> {
        let shown = redact_url(&config.url);
        let (transport, host, port) = parse_url(&config.url)
            .map_err(|e| SinkError::Config(format!("syslog url `{shown}`: {e}")))?;
        let tls = match transport {
            Transport::Tls => Some(TlsConnector::from(Arc::new(client_config(config)?))),
            _ => None,
        };
        Ok(SyslogTarget {
            transport,
            host,
            port,
            shown,
            tls,
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            batch: batch.max(1),
            format,
            conn: Arc::new(Mutex::new(None)),
            udp: Arc::new(Mutex::new(None)),
        })
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, SinkError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| SinkError::Config(format!("reading {}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| SinkError::Config(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(SinkError::Config(format!(
            "{}: no certificate in it; give a PEM file with `-----BEGIN CERTIFICATE-----` blocks",
            path.display()
        )));
    }
    Ok(certs)
}

fn client_config(config: &HttpConfig) -> Result<ClientConfig, SinkError> {
    let mut roots = RootCertStore::empty();
    match &config.tls.ca_file {
        // A private CA: only it (the usual case for a SIEM's collector).
        Some(ca) => {
            for c in read_certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| SinkError::Config(format!("CA file {}: {e}", ca.display())))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(SinkError::Config(
                    "syslog over TLS: no system CA certificates; set tls.ca_file to the receiver's CA"
                        .into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SinkError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    match (&config.tls.client_cert, &config.tls.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                SinkError::Config(format!("reading client key {}: {e}", key.display()))
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| SinkError::Config(format!("client certificate: {e}")))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(SinkError::Config(
            "tls: set both client_cert and client_key, or neither".into(),
        )),
    }
}

impl SyslogTarget {
    async fn connect(&self) -> Result<Box<dyn Stream>, String> {
        let addr = (self.host.as_str(), self.port);
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(tls) => {
                let name = ServerName::try_from(self.host.clone())
                    .map_err(|e| format!("server name `{}`: {e}", self.host))?;
                let s = tokio::time::timeout(self.connect_timeout, tls.connect(name, tcp))
                    .await
                    .map_err(|_| "TLS handshake timed out".to_owned())?
                    .map_err(|e| format!("TLS handshake: {e}"))?;
                Ok(Box::new(s))
            }
        }
    }

    async fn send_stream(&self, frames: Vec<u8>) -> Result<(), String> {
        let mut conn = self.conn.lock().await;
        if conn.is_none() {
            *conn = Some(self.connect().await?);
        }
        let stream = conn.as_mut().expect("connected");
        let write = async {
            stream.write_all(&frames).await?;
            stream.flush().await
        };
        match tokio::time::timeout(self.request_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                *conn = None;
                Err(format!("write: {e}"))
            }
            Err(_) => {
                *conn = None;
                Err("write timed out".into())
            }
        }
    }

    async fn send_udp(&self, messages: Vec<String>) -> Result<(), String> {
        let mut sock = self.udp.lock().await;
        if sock.is_none() {
            let s = UdpSocket::bind(if self.host.contains(':') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            })
            .await
            .map_err(|e| format!("UDP socket: {e}"))?;
            s.connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| format!("UDP connect: {e}"))?;
            *sock = Some(s);
        }
        let s = sock.as_ref().expect("bound");
        for m in messages {
            if let Err(e) = s.send(m.as_bytes()).await {
                *sock = None;
                return Err(format!("UDP send: {e}"));
            }
        }
        Ok(())
    }
}

impl Deliver for SyslogTarget {
    fn max_batch(&self) -> usize {
        self.batch
    }

    fn send(&self, batch: Vec<Bytes>) -> BoxFuture<Outcome> {
        let messages: Vec<String> = batch
            .iter()
            .map(|r| format_message(r, self.format))
            .collect();
        let this = SyslogTarget {
            transport: self.transport,
            host: self.host.clone(),
            port: self.port,
            shown: self.shown.clone(),
            tls: self.tls.clone(),
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            batch: self.batch,
            format: self.format,
            conn: self.conn.clone(),
            udp: self.udp.clone(),
        };
        Box::pin(async move {
            let result = match this.transport {
                Transport::Udp => this.send_udp(messages).await,
                Transport::Tcp | Transport::Tls => {
                    let mut frames = Vec::new();
                    for m in &messages {
                        frames.extend(octet_counted(m));
                    }
                    this.send_stream(frames).await
                }
            };
            match result {
                Ok(()) => Outcome::Delivered,
                Err(reason) => Outcome::Retry {
                    after: None,
                    reason: format!("{}: {reason}", this.shown),
                },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("tls://siem.example:6514").unwrap(),
            (Transport::Tls, "siem.example".into(), 6514)
        );
        assert_eq!(
            parse_url("udp://[::1]:514").unwrap(),
            (Transport::Udp, "::1".into(), 514)
        );
        assert!(parse_url("http://x:1").is_err());
        assert!(parse_url("tcp://x").is_err());
        assert!(parse_url("tcp://u@x:1").is_err());
    }

    #[test]
    fn message_has_header_structured_data_and_the_record() {
        let rec = br#"{"id":"01","host":"node-1","rule":"r\"]x","severity":"high","kind":"file","container":{"name":"web","pod":"p","namespace":"ns"}}"#;
        let m = format_message(rec, AlertFormat::Native);
        // <local0 * 8 + err> version timestamp host app procid msgid
        assert!(m.starts_with("<131>1 "), "{m}");
        let parts: Vec<&str> = m.splitn(7, ' ').collect();
        assert_eq!(parts[1].len(), "2026-11-29T15:50:00.123456Z".len(), "{m}");
        assert!(parts[1].ends_with('Z'), "{m}");
        assert_eq!(&parts[2..4], ["node-1", "monitor"], "{m}");
        assert_eq!(parts[5], "alert", "{m}");
        assert!(
            m.contains(r#"[monitor@32473 id="01" rule="r\"\]x" severity="high" kind="file" container="web" pod="p" namespace="ns"]"#),
            "{m}"
        );
        assert!(
            m.ends_with(&format!("] {}", String::from_utf8_lossy(rec))),
            "{m}"
        );
        assert_eq!(octet_counted("abc"), b"3 abc");
    }

    #[test]
    fn the_message_carries_the_chosen_format_and_native_structured_data() {
        let rec = br#"{"schema":"monitor.alert/v1","id":"a1","time":"2026-11-29T15:50:00.123456Z","host":"node-1","rule":"shell","severity":"high","kind":"process","summary":"s","container":{"name":"web","pod":"p","namespace":"n"}}"#;
        let m = format_message(rec, AlertFormat::Ecs);
        assert!(m.contains("rule=\"shell\""), "{m}");
        let msg = &m[m.find("] ").unwrap() + 2..];
        let doc: Value = serde_json::from_str(msg).unwrap();
        assert_eq!(doc["event"]["kind"], "alert");
        assert_eq!(doc["event"]["id"], "a1");
        let m = format_message(rec, AlertFormat::Ocsf);
        let doc: Value = serde_json::from_str(&m[m.find("] ").unwrap() + 2..]).unwrap();
        assert_eq!(doc["class_uid"], 2004);
    }
}
