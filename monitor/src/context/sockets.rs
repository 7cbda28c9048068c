//! Which ports a container listens on, read from the kernel's socket tables
//! of its network namespace (`/proc/<pid>/net/{tcp,tcp6,udp,udp6}` of a
//! process in its cgroup). For the posture rules that judge exposed ports.
//!
//! | table | counted |
//! | --- | --- |
//! | `tcp`, `tcp6` | sockets in state `LISTEN` (`0A`) |
//! | `udp`, `udp6` | bound sockets not connected to a peer (state `07`) |
//!
//! A container that shares the host's network namespace has no tables of its
//! own (they would be the host's): [`listening_ports`] says `None` for it.
use std::{fs, os::unix::fs::MetadataExt, path::Path};

/// A port something listens on (TCP) or is bound to (UDP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenedPort {
    /// The local port.
    pub port: u16,
    /// UDP rather than TCP.
    pub udp: bool,
}

impl ListenedPort {
    /// `tcp` or `udp`.
    pub fn protocol(&self) -> &'static str {
        if self.udp { "udp" } else { "tcp" }
    }
}

/// The first process of the cgroup at `cgroup_dir` (its `cgroup.procs`).
pub fn first_pid(cgroup_dir: &Path) -> Option<u32> {
    let procs = fs::read_to_string(cgroup_dir.join("cgroup.procs")).ok()?;
    procs.lines().find_map(|l| l.trim().parse().ok())
}

/// The ports the container in `cgroup_dir` listens on, from the socket
/// tables of its network namespace under `proc_root`. `None` when no process
/// is in the cgroup, its tables cannot be read, or it is in the network
/// namespace of `proc_root`'s pid 1 (the host's). Callers must not ask for a
/// container whose runtime says it shares the host's network, since pid 1's
/// namespace cannot always be read.
pub fn listening_ports(cgroup_dir: &Path, proc_root: &Path) -> Option<Vec<ListenedPort>> {
    let pid = first_pid(cgroup_dir)?;
    let proc = proc_root.join(pid.to_string());
    let netns = fs::metadata(proc.join("ns/net")).ok()?;
    // Pid 1 may be out of reach (a sandboxed agent): callers also skip
    // containers whose runtime says they use the host's network.
    if let Ok(host) = fs::metadata(proc_root.join("1/ns/net"))
        && netns.ino() == host.ino()
        && netns.dev() == host.dev()
    {
        return None;
    }
    let mut ports = Vec::new();
    for (table, udp) in [
        ("tcp", false),
        ("tcp6", false),
        ("udp", true),
        ("udp6", true),
    ] {
        let Ok(text) = fs::read_to_string(proc.join("net").join(table)) else {
            continue;
        };
        ports.extend(parse_table(&text, udp));
    }
    ports.sort_unstable();
    ports.dedup();
    Some(ports)
}

/// The listening (TCP) or bound (UDP) ports of one `/proc/net/{tcp,udp}[6]` table.
pub fn parse_table(text: &str, udp: bool) -> Vec<ListenedPort> {
    let wanted = if udp { "07" } else { "0A" };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let local = f.nth(1)?;
            let state = f.nth(1)?;
            let port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (state == wanted && port != 0).then_some(ListenedPort { port, udp })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_tcp_and_bound_udp_from_real_tables() {
        // This machine's tables: sshd-style listener on 22, a connection from
        // it, and a UDP socket bound to 5353 beside a connected one.
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 17424 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 88123 1 0000000000000000 20 4 30 10 -1
";
        assert_eq!(
            parse_table(tcp, false),
            vec![ListenedPort {
                port: 22,
                udp: false
            }]
        );
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21516 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(
            parse_table(tcp6, false),
            vec![ListenedPort {
                port: 8080,
                udp: false
            }]
        );
        let udp = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000   105        0 19391 2 0000000000000000 0
  124: 0100007F:A1B2 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 19392 2 0000000000000000 0
";
        assert_eq!(
            parse_table(udp, true),
            vec![ListenedPort {
                port: 5353,
                udp: true
            }]
        );
    }

    #[test]
    fn the_hosts_namespace_is_not_judged() {
        // This test's own cgroup is in the host's network namespace.
        let Ok(text) = fs::read_to_string("/proc/self/cgroup") else {
            return;
        };
        let Ok(mount) = crate::bpf::cgroupfs::cgroup2_mount() else {
            return;
        };
        let rel = text
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap_or("/");
        let dir = mount.join(rel.trim_start_matches('/'));
        if first_pid(&dir).is_some() {
            assert_eq!(listening_ports(&dir, Path::new("/proc")), None);
        }
        assert_eq!(
            listening_ports(Path::new("/nonexistent"), Path::new("/proc")),
            None
        );
    }
}
