//! A workload's [`Learned`] as a rule file: one policy, `learned/<label>`,
//! with a process, a file-write and an egress allowlist rule, each entry
//! under a comment saying how often and when it was seen.
use std::{collections::BTreeMap, fmt::Write as _};

use super::{Egress, Learned, Seen, Workload, identity::quote};

/// The most write locations a policy lists: past it, directories are
/// generalised to their parents until the list fits (a workload writing in
/// a thousand session directories is allowed their common parent).
pub const MAX_WRITE_DIRS: usize = 16;

/// The most addresses allowed one by one for a port and protocol: past it,
/// IPv4 addresses are allowed by their /24.
pub const MAX_ADDRESSES: usize = 16;

/// The rule names a learned policy holds.
pub const PROCESS_RULE: &str = "learned-process";
pub const WRITE_RULE: &str = "learned-write";
pub const EGRESS_RULE: &str = "learned-egress";

fn seen(s: &Seen) -> String {
    if s.count == 1 {
        format!("seen once, {}", s.first)
    } else {
        format!("seen {} times, first {}, last {}", s.count, s.first, s.last)
    }
}

/// The rule file's text.
pub fn policy_file(workload: &Workload, learned: &Learned) -> String {
    let label = workload.label();
    let mut out = String::new();
    let first = learned.containers.values().map(|s| s.first.as_str()).min();
    let last = learned.containers.values().map(|s| s.last.as_str()).max();
    let containers: Vec<&str> = learned.containers.keys().map(String::as_str).collect();
    let _ = writeln!(
        out,
        "# Learned by `monitor learn` for {label}: {} events in {} container(s) ({}),\n\
         # first {}, last {}.\n\
         # An ordinary rule file (rules/README.md): read it, edit it, try it with\n\
         # `monitor run --shadow DIR`, then load it with `--rules DIR`. A later\n\
         # `monitor learn` with the same --out merges what it sees into this file\n\
         # unless it was edited since (it then writes `{}.new` beside it).",
        learned.events,
        containers.len(),
        containers.join(", "),
        first.unwrap_or("-"),
        last.unwrap_or("-"),
        workload.file_name(),
    );
    let _ = writeln!(
        out,
        "policies:\n  - name: {}",
        quote(&format!("learned/{label}"))
    );
    let _ = writeln!(
        out,
        "    description: {}",
        quote(&format!("What {label} did while monitor learn watched it."))
    );
    let _ = writeln!(out, "    selector: {}", workload.selector());
    let _ = writeln!(out, "    rules:");
    processes(&mut out, learned);
    writes(&mut out, learned);
    egress(&mut out, learned);
    egress_exceptions(&mut out, workload, learned);
    if !learned.listening.is_empty() {
        let _ = writeln!(
            out,
            "# Listening ports seen (no rule kind judges a bind; the posture check\n\
             # `unused-port` judges exposed ports against these):"
        );
        for ((protocol, port), s) in &learned.listening {
            let _ = writeln!(out, "#   {protocol}/{port}: {}", seen(s));
        }
    }
    out
}

fn rule_head(out: &mut String, name: &str, description: &str) {
    let _ = writeln!(
        out,
        "      - name: {name}\n        description: {}\n        severity: medium",
        quote(description)
    );
}

fn processes(out: &mut String, learned: &Learned) {
    if learned.processes.is_empty() {
        return;
    }
    rule_head(
        out,
        PROCESS_RULE,
        "A program the workload was not seen running (or from another parent).",
    );
    let _ = writeln!(out, "        process:\n          allow:");
    for ((exe, parent), s) in &learned.processes {
        let _ = writeln!(out, "            # {}", seen(s));
        let _ = writeln!(out, "            - exe: [{}]", quote(exe));
        if let Some(parent) = parent {
            let _ = writeln!(out, "              parents: [{}]", quote(parent));
        }
    }
}

fn writes(out: &mut String, learned: &Learned) {
    if learned.writes.is_empty() {
        return;
    }
    rule_head(
        out,
        WRITE_RULE,
        "A write outside the directories the workload was seen writing in.",
    );
    let _ = writeln!(out, "        file:\n          allow:");
    for (dir, s) in generalise(&learned.writes, MAX_WRITE_DIRS) {
        let glob = if dir == "/" {
            "/**".to_owned()
        } else {
            format!("{dir}/**")
        };
        let _ = writeln!(out, "            # {}", seen(&s));
        let _ = writeln!(out, "            - {}", quote(&glob));
    }
}

/// Directories, generalised to their parents (deepest first) until at most
/// `cap` remain; each keeps the sightings of everything below it.
pub fn generalise(dirs: &BTreeMap<String, Seen>, cap: usize) -> BTreeMap<String, Seen> {
    let mut current: BTreeMap<String, Seen> = dirs.clone();
    loop {
        // Below another listed directory is covered by it.
        let mut folded: BTreeMap<String, Seen> = BTreeMap::new();
        for (dir, s) in &current {
            let cover = folded
                .keys()
                .find(|d| d.as_str() == "/" || dir.starts_with(&format!("{d}/")))
                .cloned();
            match cover {
                Some(d) => folded.get_mut(&d).expect("found").merge(s),
                None => {
                    folded.insert(dir.clone(), s.clone());
                }
            }
        }
        current = folded;
        let depth = current.keys().map(|d| components(d)).max().unwrap_or(0);
        if current.len() <= cap || depth <= 1 {
            return current;
        }
        let mut shallower: BTreeMap<String, Seen> = BTreeMap::new();
        for (dir, s) in &current {
            let dir = if components(dir) == depth {
                parent(dir)
            } else {
                dir.clone()
            };
            shallower.entry(dir).or_default().merge(s);
        }
        current = shallower;
    }
}

fn components(dir: &str) -> usize {
    dir.split('/').filter(|c| !c.is_empty()).count()
}

fn parent(dir: &str) -> String {
    match dir.rsplit_once('/') {
        Some(("", _)) | None => "/".to_owned(),
        Some((p, _)) => p.to_owned(),
    }
}

fn egress(out: &mut String, learned: &Learned) {
    if learned.egress.is_empty() {
        return;
    }
    rule_head(
        out,
        EGRESS_RULE,
        "A connection the workload was not seen making (by DNS name, or by address where it resolved none).",
    );
    let _ = writeln!(out, "        egress:\n          allow:");
    for (e, s) in &egress_entries(learned) {
        let _ = writeln!(out, "            # {}", seen(s));
        let _ = writeln!(out, "            - {}", destination(e));
        let _ = writeln!(
            out,
            "              ports: [{}]\n              protocols: [{}]",
            e.port, e.protocol
        );
    }
}

/// The shipped `egress` rule stands aside for the workload: its learned
/// allowlist judges the workload's egress, more narrowly, and one
/// connection gives one alert rather than one per allowlist.
fn egress_exceptions(out: &mut String, workload: &Workload, learned: &Learned) {
    if learned.egress.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "  - name: default/egress\n    extend: true\n    exceptions:\n      - reason: {}\n        rules: [egress]\n        selector: {}",
        quote(&format!(
            "{EGRESS_RULE} of learned/{} judges this workload's egress",
            workload.label()
        )),
        workload.selector(),
    );
}

/// `dns: [...]` or `to: [...]`: a name where one was known.
fn destination(e: &Egress) -> String {
    match (&e.dns, &e.to) {
        (Some(name), _) => format!("dns: [{}]", quote(name)),
        (None, Some(to)) => format!("to: [{}]", quote(to)),
        (None, None) => "to: []".to_owned(),
    }
}

/// The destinations, addresses past [`MAX_ADDRESSES`] for one port and
/// protocol by their /24.
fn egress_entries(learned: &Learned) -> BTreeMap<Egress, Seen> {
    let mut by_service: BTreeMap<(u16, &str), usize> = BTreeMap::new();
    for e in learned.egress.keys().filter(|e| e.to.is_some()) {
        *by_service.entry((e.port, e.protocol.as_str())).or_default() += 1;
    }
    let mut entries: BTreeMap<Egress, Seen> = BTreeMap::new();
    for (e, s) in &learned.egress {
        let mut e = e.clone();
        if let Some(to) = &e.to
            && by_service[&(e.port, e.protocol.as_str())] > MAX_ADDRESSES
            && let Some(v4) = to.strip_suffix("/32")
            && let Ok(ip) = v4.parse::<std::net::Ipv4Addr>()
        {
            let [a, b, c, _] = ip.octets();
            e.to = Some(format!("{a}.{b}.{c}.0/24"));
        }
        entries.entry(e).or_default().merge(s);
    }
    entries
}
