//! Raising each posture finding once per container, at the moment it can be
//! judged: start-up facts when the metadata is read, ports when bound or
//! after the grace.
use std::{collections::HashMap, collections::HashSet, sync::Arc, time::Instant};

use super::{PortsSeen, PostureSubject};
use crate::{
    context::{
        CgroupRegistry, ContainerInfo, EnrichedEvent, ListenedPort, MetadataStatus, RuntimeMetadata,
    },
    event::{CgroupOp, EventBody, NetOp, Protocol},
    finding::Finding,
    policy::{model::RuleSet, selector::Workload},
};

/// A posture finding ready for the alert pipeline.
#[derive(Clone, Debug)]
pub struct PostureAlert {
    /// The finding.
    pub finding: Finding,
    /// The container it is about.
    pub container: ContainerInfo,
    /// How complete `container` is.
    pub status: MetadataStatus,
}

/// Containers whose raised findings are remembered; past this the memory
/// starts afresh (a container is then judged again, once).
const MAX_RAISED: usize = 65_536;

/// Watches the containers the registry knows and raises each posture
/// finding once per container: the start-up facts when the container's
/// metadata is first read (a new container, or one running when the agent
/// started), `ssh-port` when a process in it binds the port, `unused-port`
/// after its grace.
#[derive(Debug, Default)]
pub struct PostureWatch {
    /// cgroup id -> what is watched of it.
    watched: HashMap<u64, Watched>,
    /// (container id, policy, rule) already raised.
    raised: HashSet<(String, Arc<str>, Arc<str>)>,
    /// The first tick is over: containers found later started after the agent.
    ticked: bool,
}

#[derive(Debug)]
struct Watched {
    first_seen: Instant,
    /// The start-up facts were judged under the rules in force.
    judged: bool,
    /// Ports seen bound by bind events.
    bound: Vec<ListenedPort>,
    /// How many of the `unused-port` graces have been judged.
    graces_done: usize,
    /// Running before the agent started: binds before then were not seen.
    preexisting: bool,
}

impl PostureWatch {
    /// An empty watch.
    pub fn new() -> Self {
        PostureWatch::default()
    }

    /// New rules are in force: every container is judged again on the next
    /// [`tick`](Self::tick); what was raised is not raised again.
    pub fn rules_replaced(&mut self) {
        for w in self.watched.values_mut() {
            w.judged = false;
            w.graces_done = 0;
        }
    }

    /// Judges the containers whose metadata the registry has read and that
    /// were not judged yet, and those whose `unused-port` grace has passed.
    /// `listening` reads the ports a container listens on from its sockets
    /// (`None` when it cannot tell, such as in the host's network namespace).
    pub fn tick(
        &mut self,
        rules: &RuleSet,
        registry: &CgroupRegistry,
        now: Instant,
        listening: &dyn Fn(&str) -> Option<Vec<ListenedPort>>,
        out: &mut Vec<PostureAlert>,
    ) {
        let graces = rules.posture_graces();
        for (id, entry) in registry.containers() {
            let Some(meta) = entry.metadata.as_deref() else {
                continue;
            };
            let preexisting = !self.ticked;
            let w = self.watched.entry(id).or_insert_with(|| Watched {
                first_seen: entry.first_seen.min(now),
                judged: false,
                bound: Vec::new(),
                graces_done: 0,
                preexisting,
            });
            let age = now.saturating_duration_since(w.first_seen);
            let start = !w.judged;
            let settle = graces.get(w.graces_done).is_some_and(|g| age >= *g);
            if !start && !settle {
                continue;
            }
            w.judged = true;
            let (container, status) = registry.container_info(id);
            let Some(container) = container else { continue };
            let mut seen = w.bound.clone();
            let ports = if settle {
                w.graces_done = graces.iter().filter(|g| **g <= age).count();
                let sockets = (meta.posture.host_network != Some(true))
                    .then(|| listening(&entry.path))
                    .flatten();
                // Without socket tables of its own (the host's network
                // namespace) and with binds from before the agent unseen, a
                // port cannot be called unused.
                let complete = sockets.is_some() || !w.preexisting;
                seen.extend(sockets.unwrap_or_default());
                seen.sort_unstable();
                seen.dedup();
                if complete {
                    PortsSeen::Settled {
                        listening: &seen,
                        age,
                    }
                } else {
                    PortsSeen::Listening(&seen)
                }
            } else if rules.has_listening_checks() {
                // Ports listened on before the agent saw the container.
                if meta.posture.host_network != Some(true) {
                    seen.extend(listening(&entry.path).unwrap_or_default());
                }
                PortsSeen::Listening(&seen)
            } else {
                PortsSeen::Unknown
            };
            let subject = PostureSubject {
                container: &container,
                metadata: meta,
                ports,
            };
            let mut found = Vec::new();
            rules.evaluate_posture(&workload(&container, meta), &subject, &mut found);
            Self::keep_new(&mut self.raised, found, &container, status, out);
        }
        self.ticked = true;
    }

    /// Learns from one event: a bind in a container (its port counts as
    /// listened on, and `ssh-port` is judged), a removed cgroup (forgotten).
    pub fn observe(&mut self, rules: &RuleSet, ev: &EnrichedEvent, out: &mut Vec<PostureAlert>) {
        match &ev.event.body {
            EventBody::Cgroup(c) if c.op == CgroupOp::Rmdir => {
                self.watched.remove(&c.id);
            }
            EventBody::Network(n) if n.op == NetOp::Bind && n.dport != 0 => {
                let Some(container) = &ev.container else {
                    return;
                };
                // The bind may come before the tick that first judges the container.
                let w = self
                    .watched
                    .entry(ev.event.header.cgroup_id)
                    .or_insert_with(|| Watched {
                        first_seen: Instant::now(),
                        judged: false,
                        bound: Vec::new(),
                        graces_done: 0,
                        preexisting: false,
                    });
                let port = ListenedPort {
                    port: n.dport,
                    udp: n.protocol == Protocol::Udp,
                };
                if !w.bound.contains(&port) {
                    w.bound.push(port);
                }
                // Its files not read yet: the port is remembered for the grace.
                let Some(meta) = ev.metadata.as_deref() else {
                    return;
                };
                let subject = PostureSubject {
                    container,
                    metadata: meta,
                    ports: PortsSeen::Bound(std::slice::from_ref(&port)),
                };
                let mut found = Vec::new();
                rules.evaluate_posture(&workload(container, meta), &subject, &mut found);
                Self::keep_new(&mut self.raised, found, container, ev.metadata_status, out);
            }
            _ => {}
        }
    }

    fn keep_new(
        raised: &mut HashSet<(String, Arc<str>, Arc<str>)>,
        found: Vec<Finding>,
        container: &ContainerInfo,
        status: MetadataStatus,
        out: &mut Vec<PostureAlert>,
    ) {
        let id = container.id.clone().unwrap_or_default();
        for f in found {
            if raised.len() >= MAX_RAISED {
                raised.clear();
            }
            if raised.insert((id.clone(), f.policy.clone(), f.rule.clone())) {
                out.push(PostureAlert {
                    finding: f,
                    container: container.clone(),
                    status,
                });
            }
        }
    }
}

/// The workload a container's selectors see.
pub fn workload<'a>(c: &'a ContainerInfo, meta: &'a RuntimeMetadata) -> Workload<'a> {
    Workload {
        host: false,
        image: c.image.as_deref(),
        name: c.name.as_deref(),
        namespace: c.namespace.as_deref(),
        pod: c.pod.as_deref(),
        runtime: c.runtime.as_deref(),
        labels: &meta.labels,
    }
}
