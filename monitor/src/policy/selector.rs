//! Which workloads a policy applies to.
use std::collections::{BTreeMap, HashMap};

use super::matcher::Globs;
use crate::context::{EnrichedEvent, MetadataStatus, RuntimeMetadata};

/// Looks up a container's labels (Kubernetes pod labels, Docker/OCI labels).
///
/// Implemented for the usual map types so the context module can hand over
/// whatever it keeps, without copying.
pub trait Labels {
    /// The value of label `key`, if the workload has it.
    fn label(&self, key: &str) -> Option<&str>;
}

/// A workload without labels.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLabels;

impl Labels for NoLabels {
    fn label(&self, _: &str) -> Option<&str> {
        None
    }
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: std::hash::BuildHasher> Labels for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for [(String, String)] {
    fn label(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

impl Labels for Vec<(String, String)> {
    fn label(&self, key: &str) -> Option<&str> {
        self.as_slice().label(key)
    }
}

/// What a [selector](Selector) looks at: the workload an event came from,
/// borrowed from the event's context. Unknown parts are `None` and match no
/// selector field that names them.
#[derive(Clone, Copy)]
pub struct Workload<'a> {
    /// A host process, not in a container.
    pub host: bool,
    /// Image reference as the runtime reports it (`nginx:1.27`, `docker.io/library/nginx:1.27`).
    pub image: Option<&'a str>,
    /// Container name.
    pub name: Option<&'a str>,
    /// Kubernetes namespace.
    pub namespace: Option<&'a str>,
    /// Kubernetes pod name.
    pub pod: Option<&'a str>,
    /// `docker`, `containerd`, `crio`, `podman`.
    pub runtime: Option<&'a str>,
    /// Container or pod labels.
    pub labels: &'a dyn Labels,
}

impl<'a> Workload<'a> {
    /// The workload of an enriched event. Labels are not in
    /// [`ContainerInfo`](crate::context::ContainerInfo) yet: callers that have
    /// them set [`Workload::labels`] and use
    /// [`RuleSet::evaluate_with`](super::RuleSet::evaluate_with).
    pub fn of(ev: &'a EnrichedEvent) -> Self {
        match &ev.container {
            Some(c) if ev.metadata_status != MetadataStatus::Host => Workload {
                host: false,
                image: c.image.as_deref(),
                name: c.name.as_deref(),
                namespace: c.namespace.as_deref(),
                pod: c.pod.as_deref(),
                runtime: c.runtime.as_deref(),
                labels: match &ev.metadata {
                    Some(m) => &m.labels,
                    None => &NoLabels,
                },
            },
            _ => Workload::host(),
        }
    }

    /// The workload of a container the registry knows, from its `container`
    /// object and runtime metadata (for its labels).
    pub fn container(
        c: &'a crate::context::ContainerInfo,
        metadata: Option<&'a RuntimeMetadata>,
    ) -> Self {
        Workload {
            host: false,
            image: c.image.as_deref(),
            name: c.name.as_deref(),
            namespace: c.namespace.as_deref(),
            pod: c.pod.as_deref(),
            runtime: c.runtime.as_deref(),
            labels: match metadata {
                Some(m) => &m.labels,
                None => &NoLabels,
            },
        }
    }

    /// A host process.
    pub fn host() -> Self {
        Workload {
            host: true,
            image: None,
            name: None,
            namespace: None,
            pod: None,
            runtime: None,
            labels: &NoLabels,
        }
    }
}

impl std::fmt::Debug for Workload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload")
            .field("host", &self.host)
            .field("image", &self.image)
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("pod", &self.pod)
            .field("runtime", &self.runtime)
            .finish_non_exhaustive()
    }
}

/// The container runtimes a selector may name.
pub(crate) const RUNTIMES: &[&str] = &["docker", "containerd", "crio", "podman"];

/// A compiled selector. A host process matches when `host` is set; a container
/// matches when `containers` is set or any container field is given, and every
/// given field matches (a list matches when any of its globs does).
#[derive(Clone, Debug, Default)]
pub(crate) struct Selector {
    pub host: bool,
    pub containers: bool,
    pub image: Option<Globs>,
    pub name: Option<Globs>,
    pub namespace: Option<Globs>,
    pub pod: Option<Globs>,
    /// Runtime names, each one of [`RUNTIMES`].
    pub runtime: Option<Vec<&'static str>>,
    pub labels: Vec<(String, Globs)>,
}

impl Selector {
    /// Whether any container field is given.
    pub fn has_container_fields(&self) -> bool {
        self.image.is_some()
            || self.name.is_some()
            || self.namespace.is_some()
            || self.pod.is_some()
            || self.runtime.is_some()
            || !self.labels.is_empty()
    }

    pub fn matches(&self, w: &Workload<'_>) -> bool {
        if w.host {
            return self.host;
        }
        if !self.containers && !self.has_container_fields() {
            return false;
        }
        field(&self.image, w.image.map(short_image), w.image)
            && field(&self.name, w.name, None)
            && field(&self.namespace, w.namespace, None)
            && field(&self.pod, w.pod, None)
            && self
                .runtime
                .as_ref()
                .is_none_or(|rs| w.runtime.is_some_and(|r| rs.contains(&r)))
            && self
                .labels
                .iter()
                .all(|(k, g)| w.labels.label(k).is_some_and(|v| g.is_match(v)))
    }
}

/// A field given in the selector must be known and match (in either spelling).
fn field(globs: &Option<Globs>, value: Option<&str>, alt: Option<&str>) -> bool {
    match globs {
        None => true,
        Some(g) => value.is_some_and(|v| g.is_match(v)) || alt.is_some_and(|v| g.is_match(v)),
    }
}

/// `docker.io/library/nginx:1.27` and `docker.io/nginx:1.27` as the short
/// `nginx:1.27` people write, so `image: ["nginx:*"]` matches either spelling.
fn short_image(image: &str) -> &str {
    let rest = image.strip_prefix("docker.io/").unwrap_or(image);
    rest.strip_prefix("library/").unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::matcher::{GlobKind, glob};

    fn g(kind: GlobKind, pats: &[&str]) -> Option<Globs> {
        Some(Globs::new(pats.iter().map(|p| glob(p, kind).unwrap())))
    }

    fn container<'a>(image: &'a str, name: &'a str, labels: &'a dyn Labels) -> Workload<'a> {
        Workload {
            host: false,
            image: Some(image),
            name: Some(name),
            namespace: Some("shop"),
            pod: Some("web-7d9f"),
            runtime: Some("containerd"),
            labels,
        }
    }

    #[test]
    fn selectors() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())]
            .into_iter()
            .collect();
        let web = container("docker.io/library/nginx:1.27", "web", &labels);
        let db = container("postgres:16", "db", &NoLabels);
        let unknown = Workload {
            image: None,
            ..container("", "x", &NoLabels)
        };
        let host = Workload::host();

        let all = Selector {
            containers: true,
            ..Selector::default()
        };
        let host_only = Selector {
            host: true,
            ..Selector::default()
        };
        let nginx = Selector {
            image: g(GlobKind::Path, &["nginx:*"]),
            ..Selector::default()
        };
        let full_name = Selector {
            image: g(GlobKind::Path, &["docker.io/library/nginx:1.*"]),
            ..Selector::default()
        };
        let named = Selector {
            name: g(GlobKind::Text, &["web*"]),
            namespace: g(GlobKind::Text, &["shop"]),
            pod: g(GlobKind::Text, &["web-*"]),
            runtime: Some(vec!["containerd"]),
            ..Selector::default()
        };
        let docker = Selector {
            runtime: Some(vec!["docker"]),
            ..Selector::default()
        };
        let labelled = Selector {
            labels: vec![("app".into(), g(GlobKind::Text, &["web"]).unwrap())],
            ..Selector::default()
        };
        let nothing = Selector::default();

        let cases: &[(&str, &Selector, &Workload, bool)] = &[
            ("all/web", &all, &web, true),
            ("all/host", &all, &host, false),
            ("host/host", &host_only, &host, true),
            ("host/web", &host_only, &web, false),
            ("nginx/web (long image name)", &nginx, &web, true),
            ("nginx/db", &nginx, &db, false),
            ("nginx/unknown image", &nginx, &unknown, false),
            ("nginx/host", &nginx, &host, false),
            ("full name/web", &full_name, &web, true),
            ("named/web", &named, &web, true),
            ("named/db", &named, &db, false),
            ("docker/web", &docker, &web, false),
            ("labelled/web", &labelled, &web, true),
            ("labelled/db", &labelled, &db, false),
            ("empty/web", &nothing, &web, false),
            ("empty/host", &nothing, &host, false),
        ];
        for (what, sel, w, want) in cases {
            assert_eq!(sel.matches(w), *want, "{what}");
        }
    }

    #[test]
    fn label_sources() {
        let v = vec![("a".to_string(), "1".to_string())];
        assert_eq!(v.label("a"), Some("1"));
        assert_eq!(v.label("b"), None);
        let h: HashMap<String, String> = v.iter().cloned().collect();
        assert_eq!(h.label("a"), Some("1"));
        assert_eq!(NoLabels.label("a"), None);
    }

    #[test]
    fn short_images() {
        assert_eq!(short_image("docker.io/library/nginx:1.27"), "nginx:1.27");
        assert_eq!(short_image("docker.io/bitnami/redis:7"), "bitnami/redis:7");
        assert_eq!(short_image("ghcr.io/org/app:1"), "ghcr.io/org/app:1");
    }
}
