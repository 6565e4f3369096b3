//! The pod-template hash that names a Deployment's ReplicaSets
//! (`<deployment>-<hash>`) and labels their pods (`pod-template-hash`), so the same
//! template always maps to the same ReplicaSet.
//!
//! FNV-1a (32 bit) over the template's protobuf encoding (deterministic: maps are
//! ordered) and the Deployment's collisionCount, printed in decimal and then mapped
//! onto an alphabet without vowels, as Kubernetes does, so a hash never spells a word
//! and reads like Kubernetes' (`5d59d67564`).

use prost::Message as _;
use proto::core::v1::PodTemplateSpec;

/// The label every pod and ReplicaSet of a Deployment carries.
pub const LABEL: &str = "pod-template-hash";

/// Kubernetes' "safe" alphabet: no vowels, no characters that look alike.
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub fn compute(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    // The hash must not depend on the label it produces.
    let mut template = template.clone();
    if let Some(meta) = template.metadata.as_mut() {
        meta.labels.remove(LABEL);
    }
    let mut hash = Fnv1a::new();
    hash.write(&template.encode_to_vec());
    if let Some(count) = collision_count {
        hash.write(&count.to_le_bytes());
    }
    hash.finish().to_string().bytes().map(|digit| ALPHABET[usize::from(digit) % ALPHABET.len()] as char).collect()
}

struct Fnv1a(u32);

impl Fnv1a {
    fn new() -> Self {
        Fnv1a(0x811c_9dc5)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u32::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }

    fn finish(&self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::core::v1::{Container, PodSpec};
    use proto::meta::v1::ObjectMeta;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: [("app".to_string(), "web".to_string())].into_iter().collect(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container { name: "web".into(), image: image.into(), ..Default::default() }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        let mut h = Fnv1a::new();
        h.write(b"a");
        assert_eq!(h.finish(), 0xe40c_292c);
        let mut h = Fnv1a::new();
        h.write(b"foobar");
        assert_eq!(h.finish(), 0xbf9c_f968);
    }

    #[test]
    fn same_template_same_hash_and_changes_change_it() {
        let a = compute(&template("nginx:1.25"), None);
        assert_eq!(a, compute(&template("nginx:1.25"), None));
        assert_ne!(a, compute(&template("nginx:1.26"), None));
        assert_ne!(a, compute(&template("nginx:1.25"), Some(1)), "a collision count moves the hash");
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)), "{a}");
        assert!((6..=10).contains(&a.len()), "{a}");
    }

    #[test]
    fn the_hash_label_itself_does_not_change_the_hash() {
        let plain = template("nginx");
        let mut labelled = plain.clone();
        labelled.metadata.as_mut().unwrap().labels.insert(LABEL.to_string(), "abc".to_string());
        assert_eq!(compute(&plain, None), compute(&labelled, None));
    }
}
