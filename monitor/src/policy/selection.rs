//! Which policies select each workload, remembered per cgroup so an event
//! costs no selector matches while its workload stays the same.
use std::{collections::HashMap, sync::Arc};

use super::{model::RuleSet, selector::Workload};
use crate::context::{EnrichedEvent, MetadataStatus, RuntimeMetadata};

/// The policies whose selectors match a workload, remembered per cgroup.
///
/// A selector looks only at the workload (host or container: image, name,
/// namespace, pod, runtime, labels), which changes when the registry learns
/// more about a container, not from one event to the next. Checking every
/// policy's selector on every event costs a glob match per policy: with a
/// thousand policies that, not the rules, was the time per event.
///
/// An entry is used only while the event shows the very workload it was
/// made for (every field equal, the same metadata with its labels), so a
/// container whose metadata arrives later is selected afresh.
#[derive(Debug, Default)]
pub(super) struct Selection {
    /// For host processes (every host process is the same workload).
    host: Vec<u32>,
    containers: HashMap<u64, Selected>,
}

#[derive(Debug)]
struct Selected {
    key: WorkloadKey,
    policies: Vec<u32>,
}

/// Everything [`Workload::of`] takes from an event of a container; the
/// metadata (labels) is compared by identity and kept alive by the entry, so
/// its address cannot be reused by other metadata while the entry exists.
#[derive(Debug)]
struct WorkloadKey {
    status: MetadataStatus,
    image: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
    pod: Option<String>,
    runtime: Option<String>,
    metadata: Option<Arc<RuntimeMetadata>>,
}

impl WorkloadKey {
    fn matches(&self, ev: &EnrichedEvent) -> bool {
        let Some(c) = &ev.container else {
            return false;
        };
        self.status == ev.metadata_status
            && self.image == c.image
            && self.name == c.name
            && self.namespace == c.namespace
            && self.pod == c.pod
            && self.runtime == c.runtime
            && match (&self.metadata, &ev.metadata) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }

    fn of(ev: &EnrichedEvent) -> Option<WorkloadKey> {
        let c = ev.container.as_ref()?;
        Some(WorkloadKey {
            status: ev.metadata_status,
            image: c.image.clone(),
            name: c.name.clone(),
            namespace: c.namespace.clone(),
            pod: c.pod.clone(),
            runtime: c.runtime.clone(),
            metadata: ev.metadata.clone(),
        })
    }
}

/// Cgroups whose selection is remembered; past this the memory starts afresh
/// (entries of removed cgroups also go when their `cgroup_rmdir` arrives).
const MAX_SELECTIONS: usize = 16_384;

impl Selection {
    pub(super) fn new(rules: &RuleSet) -> Self {
        Selection {
            host: rules.select(&Workload::host()),
            containers: HashMap::new(),
        }
    }

    /// The selected policies for `ev`, whose workload is `w` (`Workload::of(ev)`).
    pub(super) fn get(&mut self, rules: &RuleSet, ev: &EnrichedEvent, w: &Workload<'_>) -> &[u32] {
        // `Workload::of` makes every event without a container a host one.
        if w.host || ev.container.is_none() {
            return &self.host;
        }
        let id = ev.event.header.cgroup_id;
        let known = self.containers.get(&id).is_some_and(|s| s.key.matches(ev));
        if !known && let Some(key) = WorkloadKey::of(ev) {
            if self.containers.len() >= MAX_SELECTIONS && !self.containers.contains_key(&id) {
                self.containers.clear();
            }
            let policies = rules.select(w);
            self.containers.insert(id, Selected { key, policies });
        }
        &self.containers[&id].policies
    }

    pub(super) fn forget(&mut self, cgroup_id: u64) {
        self.containers.remove(&cgroup_id);
    }
}
