//! A real DNS server for the egress-by-name tests: Debian's dnsmasq, in a
//! network namespace of its own, joined by a veth pair to a client namespace
//! the workload joins. Nothing reaches the machine's own network: the
//! client's default route is the veth, and the server namespace holds the
//! test addresses (TEST-NET-1) on its loopback, so a connect to one is
//! refused at once.
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The server's address on the veth, and the client's.
pub const SERVER: &str = "10.213.0.1";
const CLIENT: &str = "10.213.0.2";

/// A running dnsmasq and the two namespaces.
pub struct DnsServer {
    client_ns: String,
    server_ns: String,
    dnsmasq: Child,
    /// `nameserver <SERVER>`, for the workload's `/etc/resolv.conf`.
    pub resolv_conf: tempfile::NamedTempFile,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl DnsServer {
    /// Starts a server answering `records`: dnsmasq options such as
    /// `host-record=cdn.example.test,192.0.2.10,3` or
    /// `cname=www.example.test,cdn.example.test,3`. Every address a record
    /// names must be in `addresses`, which the server namespace takes.
    pub fn start(records: &[&str], addresses: &[&str]) -> DnsServer {
        let tag = std::process::id();
        let client_ns = format!("mon-dnsc-{tag}");
        let server_ns = format!("mon-dnss-{tag}");
        for ns in [&client_ns, &server_ns] {
            // A namespace left by a killed run of the same pid, if any.
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let (c, s) = (format!("mdc{tag}"), format!("mds{tag}"));
        // Interface names are at most 15 bytes.
        let (c, s) = (&c[..c.len().min(15)], &s[..s.len().min(15)]);
        ip(&[
            "link", "add", c, "netns", &client_ns, "type", "veth", "peer", "name", s, "netns",
            &server_ns,
        ]);
        ip(&[
            "-n",
            &client_ns,
            "addr",
            "add",
            &format!("{CLIENT}/30"),
            "dev",
            c,
        ]);
        ip(&["-n", &client_ns, "link", "set", c, "up"]);
        ip(&["-n", &client_ns, "route", "add", "default", "via", SERVER]);
        ip(&[
            "-n",
            &server_ns,
            "addr",
            "add",
            &format!("{SERVER}/30"),
            "dev",
            s,
        ]);
        ip(&["-n", &server_ns, "link", "set", s, "up"]);
        for a in addresses {
            ip(&[
                "-n",
                &server_ns,
                "addr",
                "add",
                &format!("{a}/32"),
                "dev",
                "lo",
            ]);
        }
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &server_ns, "dnsmasq"])
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--pid-file=",
                "--user=root",
                "--log-queries",
                "--log-facility=-",
            ])
            .arg(format!("--listen-address={SERVER}"))
            .args(records.iter().map(|r| format!("--{r}")))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let dnsmasq = cmd.spawn().expect("dnsmasq (Debian's dnsmasq-base)");
        let resolv_conf = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(resolv_conf.path(), format!("nameserver {SERVER}\n")).unwrap();
        let server = DnsServer {
            client_ns,
            server_ns,
            dnsmasq,
            resolv_conf,
        };
        server.wait_listening();
        server
    }

    /// Waits until dnsmasq has bound its port (it binds before it answers).
    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.server_ns,
                    "ss",
                    "-Hlun",
                    "sport",
                    "=",
                    ":53",
                ])
                .output()
                .expect("ss (iproute2)");
            if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "dnsmasq did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The client namespace, for [`Isolation::join_net`](super::namespaces::Isolation).
    pub fn client_netns(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.client_ns)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.dnsmasq.kill();
        let _ = self.dnsmasq.wait();
        // Removing the namespaces removes the veth pair with them.
        for ns in [&self.client_ns, &self.server_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
