//! Which workload a container belongs to, for learning: replicas of one
//! workload must merge into one policy, and the policy's selector must pick
//! every replica and nothing else.
use serde::{Deserialize, Serialize};

use crate::context::EnrichedEvent;

/// A workload identity and the selector that picks it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Workload {
    /// A Kubernetes workload: its namespace, the owner's name (the pod's
    /// name without the ReplicaSet, StatefulSet or DaemonSet suffix), and
    /// the container's name in the pod.
    Kubernetes {
        namespace: String,
        owner: String,
        container: String,
    },
    /// Containers of one image repository (any tag or digest).
    Image { repository: String },
    /// A container known only by its name.
    Name { name: String },
}

impl Workload {
    /// The workload of the event's container, when it has one.
    pub fn of(e: &EnrichedEvent) -> Option<Workload> {
        let c = e.container.as_ref()?;
        if let (Some(namespace), Some(pod)) = (&c.namespace, &c.pod) {
            return Some(Workload::Kubernetes {
                namespace: namespace.clone(),
                owner: owner_of(pod).to_owned(),
                container: c.name.clone().unwrap_or_default(),
            });
        }
        if let Some(image) = &c.image {
            return Some(Workload::Image {
                repository: repository_of(image).to_owned(),
            });
        }
        c.name.clone().map(|name| Workload::Name { name })
    }

    /// A name for the policy and its file: `k8s/shop/web/api`,
    /// `image/shop/api`, `name/db`.
    pub fn label(&self) -> String {
        match self {
            Workload::Kubernetes {
                namespace,
                owner,
                container,
            } => format!("k8s/{namespace}/{owner}/{container}"),
            Workload::Image { repository } => format!("image/{repository}"),
            Workload::Name { name } => format!("name/{name}"),
        }
    }

    /// The file the policy is written to: the label with anything but
    /// letters, digits, `.`, `_` and `-` made `-`.
    pub fn file_name(&self) -> String {
        let safe: String = self
            .label()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("{safe}.yaml")
    }

    /// The policy's selector, as YAML flow mapping text.
    pub fn selector(&self) -> String {
        match self {
            Workload::Kubernetes {
                namespace,
                owner,
                container,
            } => format!(
                "{{namespace: [{}], pod: [{}], name: [{}]}}",
                quote(namespace),
                quote(&format!("{owner}-*")),
                quote(container)
            ),
            Workload::Image { repository } => format!(
                "{{image: [{}, {}, {}]}}",
                quote(repository),
                quote(&format!("{repository}:*")),
                quote(&format!("{repository}@*"))
            ),
            Workload::Name { name } => format!("{{name: [{}]}}", quote(name)),
        }
    }
}

/// A YAML double-quoted scalar.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// `registry:5000/shop/api:3@sha256:...` -> `registry:5000/shop/api`.
fn repository_of(image: &str) -> &str {
    let image = image.split_once('@').map_or(image, |(name, _)| name);
    match image.rsplit_once(':') {
        // A colon after the last slash is the tag's; before it, a port's.
        Some((name, tag)) if !tag.contains('/') => name,
        _ => image,
    }
}

/// The pod's owner: `web-7d4b9c8f6-x2x9k` (Deployment) -> `web`,
/// `db-0` (StatefulSet) -> `db`, `agent-x2x9k` (DaemonSet) -> `agent`.
fn owner_of(pod: &str) -> &str {
    let Some((rest, last)) = pod.rsplit_once('-') else {
        return pod;
    };
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return rest; // a StatefulSet's ordinal
    }
    // The generated suffix: five characters of the Kubernetes alphabet
    // (consonants and digits without vowels, so no words).
    let generated = |s: &str| {
        s.len() == 5
            && s.bytes()
                .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
    };
    if !generated(last) {
        return pod;
    }
    // A ReplicaSet's pod-template hash before it: 6 to 10 of the same.
    match rest.rsplit_once('-') {
        Some((owner, hash))
            if (6..=10).contains(&hash.len())
                && hash
                    .bytes()
                    .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)) =>
        {
            owner
        }
        _ => rest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_of_one_workload_have_one_owner() {
        assert_eq!(owner_of("web-7d4b9c8f6-x2x9k"), "web");
        assert_eq!(owner_of("web-api-5f6d8b7c9d-q8w2z"), "web-api");
        assert_eq!(owner_of("db-0"), "db");
        assert_eq!(owner_of("db-12"), "db");
        assert_eq!(owner_of("node-agent-x2x9k"), "node-agent");
        assert_eq!(owner_of("standalone"), "standalone");
        // A word is not a generated suffix.
        assert_eq!(owner_of("my-house"), "my-house");
    }

    #[test]
    fn an_image_repository_drops_tag_and_digest_but_not_a_port() {
        assert_eq!(repository_of("shop/api:3"), "shop/api");
        assert_eq!(
            repository_of("registry:5000/shop/api"),
            "registry:5000/shop/api"
        );
        assert_eq!(
            repository_of("registry:5000/shop/api:3@sha256:abc"),
            "registry:5000/shop/api"
        );
        assert_eq!(repository_of("nginx"), "nginx");
    }

    #[test]
    fn file_names_are_safe() {
        let w = Workload::Image {
            repository: "registry:5000/shop/api".into(),
        };
        assert_eq!(w.file_name(), "image-registry-5000-shop-api.yaml");
        assert_eq!(
            w.selector(),
            r#"{image: ["registry:5000/shop/api", "registry:5000/shop/api:*", "registry:5000/shop/api@*"]}"#
        );
    }
}
