//! Where objects live in etcd. Cluster-scoped kinds have no namespace segment, so a
//! namespace can never be confused with a name.

use proto::KindInfo;

#[derive(Debug, Clone)]
pub struct Keys {
    /// "/registry" by default; several clusters can share one etcd under different prefixes.
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys { prefix: prefix.trim_end_matches('/').to_string() }
    }

    /// The key of one object. Built by appending rather than `format!`: every request
    /// builds one or two, and the formatting machinery costs several times as much.
    pub fn object(&self, info: &KindInfo, namespace: &str, name: &str) -> String {
        let parts: &[&str] = if info.namespaced {
            &[&self.prefix, "/", info.plural, "/", namespace, "/", name]
        } else {
            &[&self.prefix, "/", info.plural, "/", name]
        };
        parts.concat()
    }

    /// The prefix of every object of a kind, or of a kind in one namespace.
    pub fn collection(&self, info: &KindInfo, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if info.namespaced => format!("{}/{}/{}/", self.prefix, info.plural, ns),
            _ => format!("{}/{}/", self.prefix, info.plural),
        }
    }

    /// A key reserving one allocated value (a ClusterIP, a NodePort), written in the
    /// same transaction as the object that holds it.
    pub fn reservation(&self, range: &str, value: &str) -> String {
        format!("{}/ranges/{}/{}", self.prefix, range, value)
    }

    /// The prefix of every reservation in a range.
    pub fn reservations(&self, range: &str) -> String {
        format!("{}/ranges/{}/", self.prefix, range)
    }
}

/// The first key after every key that starts with `prefix`: the end of a prefix range.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // An all-0xff prefix has no end; etcd reads "\0" as "to the end of the keyspace".
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::resource::kinds;

    #[test]
    fn layout() {
        let keys = Keys::new("/registry/");
        assert_eq!(keys.object(&kinds::POD, "default", "web"), "/registry/pods/default/web");
        assert_eq!(keys.object(&kinds::NODE, "", "n1"), "/registry/nodes/n1");
        assert_eq!(keys.collection(&kinds::POD, Some("a")), "/registry/pods/a/");
        assert_eq!(keys.collection(&kinds::POD, None), "/registry/pods/");
        assert_eq!(keys.collection(&kinds::NODE, Some("a")), "/registry/nodes/");
        assert_eq!(keys.reservation("serviceips", "10.96.0.1"), "/registry/ranges/serviceips/10.96.0.1");
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
    }
}
