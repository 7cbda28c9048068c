//! What delivery tests need around the agent: a webhook receiver on loopback
//! (plain HTTP, or HTTPS with certificates from a CA made at test time,
//! optionally requiring a client certificate), ports that refuse or never
//! answer, a real Prometheus Alertmanager, `promtool`, and `/metrics` scrapes.
//!
//! The receiver checks every Standard Webhooks signature and records the
//! alert ids of the requests it accepted, so a test can hold what arrived
//! against what the agent emitted.
use std::{
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use hmac::{Hmac, Mac as _};
use monitor::{
    alert::{Alert, AlertKind, Severity},
    context::ContainerInfo,
    metrics::{Metrics, SinkMetrics},
    sink::{
        HttpConfig, HttpSinkConfig, RetryConfig, SecretSource, SinkConfig, SinkKind, Sinks,
        SinksOptions, SpoolConfig, TlsConfig,
    },
};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self, RootCertStore, ServerConfig,
        crypto::CryptoProvider,
        pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
        server::WebPkiClientVerifier,
    },
};

use super::Monitor;

// ---------------------------------------------------------------- receiver

/// What the receiver saw, and how it behaves.
#[derive(Default)]
pub struct Seen {
    /// Alert ids in arrival order (only from requests answered 2xx).
    pub ids: Mutex<Vec<String>>,
    /// The `webhook-id` header of each request answered 2xx.
    pub message_ids: Mutex<Vec<String>>,
    /// Every accepted alert record.
    pub alerts: Mutex<Vec<Value>>,
    /// Raw accepted bodies (Slack).
    pub bodies: Mutex<Vec<Value>>,
    /// Requests that reached the handler (a refused TLS handshake never does).
    pub requests: AtomicU64,
    pub bad_signatures: AtomicU64,
    /// Answer 500 to this many requests first.
    pub fail_first: AtomicU64,
    /// Sleep `slow_ms` before answering this many requests first.
    pub slow_first: AtomicU64,
    pub slow_ms: AtomicU64,
    /// While set, take each request and never answer it.
    pub stall: AtomicBool,
    /// Verify signatures with this key (None: don't require them).
    pub key: Mutex<Option<Vec<u8>>>,
    pub ever_unsigned: AtomicBool,
    /// TLS handshakes that failed, with the server's reason.
    pub tls_failures: Mutex<Vec<String>>,
}

impl Seen {
    /// A receiver's state that requires signatures made with `key`.
    pub fn signed(key: &[u8]) -> Arc<Seen> {
        let seen = Arc::new(Seen::default());
        *seen.key.lock().unwrap() = Some(key.to_vec());
        seen
    }

    pub fn ids(&self) -> Vec<String> {
        self.ids.lock().unwrap().clone()
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn bad_signatures(&self) -> u64 {
        self.bad_signatures.load(Ordering::SeqCst)
    }

    pub fn tls_failures(&self) -> Vec<String> {
        self.tls_failures.lock().unwrap().clone()
    }
}

/// A running receiver; `POST /hook` takes alerts.
pub struct Receiver {
    pub addr: SocketAddr,
    scheme: &'static str,
    seen: Arc<Seen>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    /// The TLS acceptor loop, when serving HTTPS.
    acceptor: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    /// Plain HTTP on `addr` (port 0 for any).
    pub async fn start(seen: Arc<Seen>, addr: SocketAddr) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().unwrap();
        let (stop, task) = serve(listener, seen.clone());
        Receiver {
            addr,
            scheme: "http",
            seen,
            stop: Some(stop),
            task,
            acceptor: None,
        }
    }

    /// HTTPS on `addr` with `tls` (see [`server_tls`]). A failed handshake
    /// is recorded in [`Seen::tls_failures`] and never reaches the handler.
    pub async fn start_tls(seen: Arc<Seen>, addr: SocketAddr, tls: Arc<ServerConfig>) -> Receiver {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind receiver");
        let addr = tcp.local_addr().unwrap();
        let (tx, rx) = mpsc::channel(16);
        let tls = TlsAcceptor::from(tls);
        let failures = seen.clone();
        let acceptor = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = tcp.accept().await else {
                    continue;
                };
                let (tls, tx, failures) = (tls.clone(), tx.clone(), failures.clone());
                // One task per handshake, so a client that stalls in the
                // handshake holds up no other.
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(30), tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => failures.tls_failures.lock().unwrap().push(e.to_string()),
                        Err(_) => failures
                            .tls_failures
                            .lock()
                            .unwrap()
                            .push("handshake timed out".into()),
                    }
                });
            }
        });
        let (stop, task) = serve(TlsListener { rx, addr }, seen.clone());
        Receiver {
            addr,
            scheme: "https",
            seen,
            stop: Some(stop),
            task,
            acceptor: Some(acceptor),
        }
    }

    /// Stops taking connections; a stalled request is let go first.
    pub async fn stop(mut self) {
        self.seen.stall.store(false, Ordering::SeqCst);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        self.task.abort();
        if let Some(a) = self.acceptor.take() {
            a.abort();
        }
    }

    /// `http://127.0.0.1:<port>/hook` (or `https://`).
    pub fn url(&self) -> String {
        format!("{}://{}/hook", self.scheme, self.addr)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(a) = self.acceptor.take() {
            a.abort();
        }
    }
}

fn serve<L>(listener: L, seen: Arc<Seen>) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let app = Router::new().route("/hook", post(receive)).with_state(seen);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    (stop, task)
}

/// Connections whose TLS handshake succeeded, for `axum::serve`.
struct TlsListener {
    rx: mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        SocketAddr,
    )>,
    addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// Checks a Standard Webhooks signature: `v1,<base64 HMAC-SHA256 of
/// "{webhook-id}.{webhook-timestamp}.{body}">`, timestamp within 5 minutes.
pub fn verify(key: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (id, ts, sig) = (
        get("webhook-id"),
        get("webhook-timestamp"),
        get("webhook-signature"),
    );
    let Ok(ts_n) = ts.parse::<u64>() else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(ts_n) > 300 || id.is_empty() {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let want = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
    sig.split(' ').any(|s| s == want)
}

async fn receive(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    while seen.stall.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if seen
        .slow_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        // Recorded only if the client waits this long (it won't).
        tokio::time::sleep(Duration::from_millis(seen.slow_ms.load(Ordering::SeqCst))).await;
    }
    if seen
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let key = seen.key.lock().unwrap().clone();
    match key {
        Some(key) if !verify(&key, &headers, &body) => {
            seen.bad_signatures.fetch_add(1, Ordering::SeqCst);
            return StatusCode::UNAUTHORIZED;
        }
        Some(_) => {}
        None => {
            if headers.get("webhook-signature").is_none() {
                seen.ever_unsigned.store(true, Ordering::SeqCst);
            }
        }
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    seen.bodies.lock().unwrap().push(v.clone());
    if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
        seen.message_ids.lock().unwrap().push(id.to_owned());
    }
    let records = match v {
        Value::Array(a) => a,
        other => vec![other],
    };
    let mut ids = seen.ids.lock().unwrap();
    let mut alerts = seen.alerts.lock().unwrap();
    for r in records {
        if let Some(id) = r.get("id").and_then(Value::as_str) {
            ids.push(id.to_owned());
        }
        alerts.push(r);
    }
    StatusCode::NO_CONTENT
}

/// A Standard Webhooks secret file (`whsec_<base64 key>`, mode 0600).
pub fn secret_file(dir: &Path, key: &[u8]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("hook.secret");
    std::fs::write(&path, format!("whsec_{}\n", B64.encode(key))).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A tokio runtime for the receiver in a test that is otherwise synchronous.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------- certificates

/// The crypto the agent's rustls uses.
pub fn crypto() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A certificate authority made at test time, with its certificate in a PEM
/// file (what `tls.ca_file` points at).
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: PathBuf,
    name: String,
    /// `<dir>/<name>-ca.pem`.
    pub ca_file: PathBuf,
}

/// A certificate and its key, issued by a [`TestCa`], in PEM files.
pub struct Issued {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    cert: CertificateDer<'static>,
    key: Vec<u8>,
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("monitor test CA {name}"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).unwrap();
        let ca_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, issuer.pem()).unwrap();
        TestCa {
            issuer,
            dir: dir.to_owned(),
            name: name.to_owned(),
            ca_file,
        }
    }

    fn issue(&self, what: &str, sans: &[&str], usage: rcgen::ExtendedKeyUsagePurpose) -> Issued {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(sans).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, what);
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_file = self.dir.join(format!("{}-{what}.pem", self.name));
        let key_file = self.dir.join(format!("{}-{what}.key", self.name));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        Issued {
            cert_file,
            key_file,
            cert: cert.der().clone(),
            key: key.serialize_der(),
        }
    }

    /// A server certificate for `127.0.0.1` and `localhost`.
    pub fn server(&self) -> Issued {
        self.issue(
            "server",
            &["127.0.0.1", "localhost"],
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate (for mutual TLS) named `name`.
    pub fn client(&self, name: &str) -> Issued {
        self.issue(name, &[], rcgen::ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }
}

/// A TLS server configuration presenting `server`; with `client_ca`, every
/// client must present a certificate that CA signed.
pub fn server_tls(server: &Issued, client_ca: Option<&TestCa>) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(crypto())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.der()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), crypto())
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key.clone()));
    Arc::new(
        builder
            .with_single_cert(vec![server.cert.clone()], key)
            .unwrap(),
    )
}

// ---------------------------------------------------------------- ports

/// A loopback port held by a socket that is bound but not listening: every
/// connection to it is refused at once, and no other socket can take it
/// until a listener that also sets `SO_REUSEADDR` (tokio's and std's do)
/// binds it, which it may while this one holds it.
pub struct RefusingPort {
    _socket: socket2::Socket,
    pub addr: SocketAddr,
}

impl RefusingPort {
    pub fn new() -> RefusingPort {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_reuse_address(true).unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        socket.bind(&any.into()).unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        RefusingPort {
            _socket: socket,
            addr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Default for RefusingPort {
    fn default() -> Self {
        Self::new()
    }
}

/// A listener whose accept queue is full and is never drained: a new
/// connection's SYN is dropped, so connecting hangs until the client gives
/// up (what a firewall that drops packets looks like).
pub struct UnreachablePort {
    _socket: socket2::Socket,
    _filler: TcpStream,
    pub addr: SocketAddr,
}

impl UnreachablePort {
    pub fn new() -> UnreachablePort {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        socket.bind(&any.into()).unwrap();
        // A backlog of 0 queues one connection; the filler takes that place.
        socket.listen(0).unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        let filler = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        UnreachablePort {
            _socket: socket,
            _filler: filler,
            addr,
        }
    }
}

impl Default for UnreachablePort {
    fn default() -> Self {
        Self::new()
    }
}

/// A listener that accepts every connection and never reads or writes a
/// byte: an HTTP request waits for its answer, a TLS handshake for the
/// server's hello, until the client's timeout ends it.
pub struct SilentPort {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl SilentPort {
    pub fn new() -> SilentPort {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (accepted.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let mut held = Vec::new();
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        a.fetch_add(1, Ordering::SeqCst);
                        held.push(conn);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        SilentPort {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }
}

impl Default for SilentPort {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SilentPort {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------- tools

/// With `CI=true` a missing tool fails the test; otherwise it is skipped loudly.
pub fn need_tool(path: &str, package: &str) -> bool {
    if Path::new(path).exists() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{path} is missing: install the Debian package `{package}` (CI=true, not skipping)");
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED: {path} is missing; `apt-get install -y {package}` to run this test !!!!!!!!\n"
    );
    false
}

pub const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
pub const PROMTOOL: &str = "/usr/bin/promtool";

/// A real Prometheus Alertmanager on a loopback port, with its own config
/// and storage, routing everything to a receiver that notifies nobody.
/// Killed (by pid) when dropped.
pub struct Alertmanager {
    child: Child,
    pub base: String,
}

impl Alertmanager {
    /// Starts it below `dir` and waits (bounded) until `/-/ready` answers.
    pub fn start(dir: &Path) -> Alertmanager {
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: blackhole\n  group_wait: 1h\nreceivers:\n  - name: blackhole\n",
        )
        .unwrap();
        // Bound, then released for Alertmanager to take: the window is tiny,
        // and a port taken meanwhile shows as a failed start below.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let log = std::fs::File::create(dir.join("alertmanager.log")).unwrap();
        let mut child = Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start alertmanager");
        let base = format!("http://{addr}");
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if http_get(addr, "/-/ready").is_ok_and(|(status, _)| status == 200) {
                break;
            }
            if Instant::now() > end || child.try_wait().unwrap().is_some() {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "alertmanager did not start: {}",
                    std::fs::read_to_string(dir.join("alertmanager.log")).unwrap_or_default()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
        Alertmanager { child, base }
    }

    pub fn addr(&self) -> SocketAddr {
        self.base.trim_start_matches("http://").parse().unwrap()
    }

    /// `GET /api/v2/alerts`.
    pub fn alerts(&self) -> Vec<Value> {
        let (status, body) = http_get(self.addr(), "/api/v2/alerts").unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `promtool check metrics` on a scrape; panics with its findings.
pub fn promtool_check(text: &str) {
    let mut p = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------- scrapes

/// A blocking `GET` over HTTP/1.0 on loopback: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("no HTTP header in {text:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no status in {head:?}")))?;
    Ok((status, body.to_owned()))
}

/// The value of one series in a Prometheus text scrape (`name{labels}` as
/// written), if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

impl Monitor {
    /// The address its `--listen 127.0.0.1:0` listener got, from its log.
    pub fn metrics_addr(&self) -> SocketAddr {
        let stderr = self.stderr();
        stderr
            .lines()
            .filter(|l| l.contains("metrics and health endpoints up"))
            .find_map(|l| l.split("addr=").nth(1))
            .and_then(|a| a.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no metrics address in the log:\n{stderr}"))
    }

    /// One scrape of its `/metrics`.
    pub fn scrape(&self) -> String {
        let (status, text) = http_get(self.metrics_addr(), "/metrics").unwrap();
        assert_eq!(status, 200, "{text}");
        text
    }

    /// Scrapes until `pred` holds for the text (bounded by `timeout`); returns it.
    pub fn wait_metrics(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.scrape();
            if pred(&text) {
                return text;
            }
            if Instant::now() >= deadline {
                panic!(
                    "no scrape with {what} within {timeout:?}; last scrape:\n{text}\nstderr:\n{}",
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills it with SIGKILL, as a crash or the OOM killer would; returns its stderr.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "killed, not exited: {status:?}");
        thread::sleep(Duration::from_millis(100));
        self.stderr()
    }

    /// Sends SIGTERM and waits up to `limit` for it to exit; returns how long
    /// it took, its exit status and stderr. Panics (after SIGKILL) when it
    /// has not exited by then.
    pub fn terminate(mut self, limit: Duration) -> (Duration, std::process::ExitStatus, String) {
        let t0 = Instant::now();
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let took = t0.elapsed();
                thread::sleep(Duration::from_millis(100));
                return (took, status, self.stderr());
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "monitor did not exit within {limit:?} of SIGTERM; stderr:\n{}",
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

// ---------------------------------------------------------------- library-level sinks

/// Alert number `i`: an `unexpected-process` in container `web` of pod
/// `shop/web-7d9f`.
pub fn alert(i: usize) -> Alert {
    let mut a = Alert::new(
        "test-node",
        "unexpected-process",
        "default/containers",
        Severity::High,
        AlertKind::Process,
        format!("unexpected process number {i} in container web"),
    );
    a.container = Some(ContainerInfo {
        id: Some(format!("{:064x}", i % 7)),
        runtime: Some("containerd".into()),
        name: Some("web".into()),
        pod: Some("web-7d9f".into()),
        namespace: Some("shop".into()),
        ..Default::default()
    });
    a
}

/// A webhook sink's settings, quick to retry (50 ms doubling to 400 ms).
pub struct Hook {
    pub url: String,
    pub secret: Option<PathBuf>,
    pub spool: PathBuf,
    pub batch: usize,
    pub queue: usize,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub spool_bytes: u64,
    pub tls: TlsConfig,
}

impl Hook {
    pub fn new(url: String, spool: PathBuf) -> Hook {
        Hook {
            url,
            secret: None,
            spool,
            batch: 1,
            queue: 4096,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            spool_bytes: 64 << 20,
            tls: TlsConfig::default(),
        }
    }

    pub fn http(&self) -> HttpConfig {
        HttpConfig {
            url: self.url.clone(),
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            use_env_proxy: false,
            tls: self.tls.clone(),
            ..Default::default()
        }
    }

    pub fn config(&self, name: &str) -> SinkConfig {
        let mut c = SinkConfig::new(
            name,
            SinkKind::Webhook(HttpSinkConfig {
                http: self.http(),
                secret: self.secret.as_ref().map(|f| SecretSource {
                    file: Some(f.clone()),
                    env: None,
                }),
                batch_size: Some(self.batch),
                spool: SpoolConfig {
                    dir: Some(self.spool.clone()),
                    max_bytes: self.spool_bytes,
                    ..Default::default()
                },
                retry: RetryConfig {
                    initial: Duration::from_millis(50),
                    max: Duration::from_millis(400),
                },
                generator_url: None,
                encoding: None,
            }),
        );
        c.queue = self.queue;
        c
    }
}

/// Starts the sinks with host `test-node`; panics on a configuration error.
pub fn start(configs: Vec<SinkConfig>, metrics: &Arc<Metrics>, spool_dir: &Path) -> Sinks {
    Sinks::start(
        configs,
        SinksOptions {
            host: "test-node".into(),
            spool_dir: spool_dir.to_owned(),
        },
        metrics.clone(),
    )
    .expect("sinks start")
}

/// Polls `cond` every 20 ms; panics with `what` after `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback port that was free a moment ago (nothing listens on it).
pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub fn ids(alerts: &[Alert]) -> Vec<String> {
    alerts.iter().map(|a| a.id.clone()).collect()
}

/// Nothing failed permanently and nothing was dropped, for any reason.
pub fn assert_clean(m: &SinkMetrics) {
    assert_eq!(m.failed_total(), 0, "failed");
    for reason in [
        "spool_full",
        "queue_full",
        "closed",
        "corrupt",
        "spool_error",
    ] {
        assert_eq!(m.dropped_total(reason), 0, "dropped {reason}");
    }
}
