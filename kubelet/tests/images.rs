//! The image store against real archives and a real registry: images built by
//! deploy/images/build-test-images.sh imported from OCI archives, a `docker save`
//! archive with whiteouts checked through a real overlay mount, pulls from Debian's
//! docker-registry on loopback through a mirror mapping, and what must be refused
//! (tampered blobs, bad references, Never without the image).

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kubelet::images::{
    ImageError, ImageStore, PullPolicy, RegistryAuth, RegistryConfig, RegistryHost, is_opaque, is_whiteout,
};
use sha2::Digest as _;

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// The test images, built by the project's script into a temp dir removed on drop.
struct TestImages(tempfile::TempDir);

impl TestImages {
    fn build() -> TestImages {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/images/build-test-images.sh");
        let output = Command::new("bash").arg(&script).arg(dir.path()).output().expect("run build-test-images.sh");
        assert!(
            output.status.success(),
            "build-test-images.sh failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        TestImages(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

fn open_store(root: &Path, registries: RegistryConfig) -> ImageStore {
    ImageStore::open(root, registries).expect("open the image store")
}

fn blob_count(root: &Path) -> usize {
    fs::read_dir(root.join("blobs/sha256")).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn imports_the_built_oci_archives_sharing_layers() {
    let images = TestImages::build();
    let root = tempfile::tempdir().unwrap();
    let store = open_store(root.path(), RegistryConfig::default());

    let refs = store.import_archive(&images.join("busybox.oci.tar")).await.unwrap();
    assert_eq!(refs, vec!["docker.io/rudder/busybox:test".to_string()]);
    let busybox = store.ensure("rudder/busybox:test", PullPolicy::Never, &[]).await.unwrap();
    assert_eq!(busybox.reference, "docker.io/rudder/busybox:test");
    assert_eq!(busybox.config.cmd, vec!["sh"]);
    assert!(busybox.config.env.iter().any(|e| e.starts_with("PATH=") && e.contains("/bin")));
    assert_eq!(busybox.layers.len(), 1);
    let layer = &busybox.layers[0];
    assert!(layer.join("bin/busybox").is_file());
    assert_eq!(fs::read_link(layer.join("bin/sh")).unwrap(), Path::new("busybox"));
    assert!(fs::read_to_string(layer.join("etc/passwd")).unwrap().starts_with("root:x:0:0:"));

    let refs = store.import_archive(&images.join("httpd.oci.tar")).await.unwrap();
    assert_eq!(refs, vec!["docker.io/rudder/httpd:test".to_string()]);
    let httpd = store.ensure("docker.io/rudder/httpd:test", PullPolicy::Never, &[]).await.unwrap();
    assert_eq!(httpd.config.cmd, vec!["/usr/local/bin/serve-hostname"]);
    assert_eq!(httpd.layers.len(), 2);
    // The busybox layer is unpacked once and shared.
    assert_eq!(httpd.layers[0], busybox.layers[0]);
    assert!(httpd.layers[1].join("usr/local/bin/serve-hostname").is_file());
    assert_ne!(httpd.id, busybox.id);

    // The image ID is the digest of the config blob as stored.
    let config_path = root.path().join("blobs/sha256").join(httpd.id.trim_start_matches("sha256:"));
    assert_eq!(sha256(&fs::read(config_path).unwrap()), httpd.id);
    assert!(httpd.repo_digest().starts_with("docker.io/rudder/httpd@sha256:"));

    // A reopened store knows the images without importing again.
    drop(store);
    let store = open_store(root.path(), RegistryConfig::default());
    let mut listed: Vec<String> = store.list().unwrap().into_iter().map(|i| i.reference).collect();
    listed.sort();
    assert_eq!(listed, vec!["docker.io/rudder/busybox:test", "docker.io/rudder/httpd:test"]);
    let again = store.ensure("rudder/httpd:test", PullPolicy::IfNotPresent, &[]).await.unwrap();
    assert_eq!(again, httpd);

    // Garbage collection keeps what is in use (and the layers it shares), then the rest goes.
    let report = store.remove_unused(&HashSet::from(["rudder/httpd:test".to_string()])).await.unwrap();
    assert_eq!(report.removed_images, vec!["docker.io/rudder/busybox:test".to_string()]);
    assert!(httpd.layers[0].is_dir(), "the shared layer stays while httpd uses it");
    let gone = store.ensure("rudder/busybox:test", PullPolicy::Never, &[]).await.unwrap_err();
    assert!(matches!(gone, ImageError::NeverPull { .. }), "{gone}");
    let report = store.remove_unused(&HashSet::new()).await.unwrap();
    assert_eq!(report.removed_images, vec!["docker.io/rudder/httpd:test".to_string()]);
    assert!(report.freed_bytes > 1_000_000, "freed {}", report.freed_bytes);
    assert_eq!(blob_count(root.path()), 0);
    assert_eq!(fs::read_dir(root.path().join("layers/sha256")).unwrap().count(), 0);
    assert!(store.disk_usage_percent().unwrap() <= 100);
}

#[tokio::test]
async fn a_remembered_image_is_checked_again_and_a_missing_layer_unpacked_again() {
    let images = TestImages::build();
    let root = tempfile::tempdir().unwrap();
    let store = open_store(root.path(), RegistryConfig::default());
    store.import_archive(&images.join("busybox.oci.tar")).await.unwrap();
    let first = store.ensure("rudder/busybox:test", PullPolicy::Never, &[]).await.unwrap();
    // The second answer comes from memory, the same as the first.
    assert_eq!(store.ensure("rudder/busybox:test", PullPolicy::IfNotPresent, &[]).await.unwrap(), first);
    let by_digest = format!("rudder/busybox@{}", first.manifest_digest);
    let pinned = store.ensure(&by_digest, PullPolicy::Never, &[]).await.unwrap();
    assert_eq!(pinned.layers, first.layers);

    // A layer removed behind the store's back is not handed out from memory.
    fs::remove_dir_all(&first.layers[0]).unwrap();
    let again = store.ensure("rudder/busybox:test", PullPolicy::Never, &[]).await.unwrap();
    assert_eq!(again, first);
    assert!(again.layers[0].join("bin/busybox").is_file(), "the layer was unpacked again");
}

/// Entries of a tar built in memory.
enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
}

fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        match entry {
            Entry::Dir(path) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, path, &[][..]).unwrap();
            }
            Entry::File(path, data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, path, *data).unwrap();
            }
            Entry::Symlink(path, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, path, target).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

/// Unmounts an overlay however the test ends.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[tokio::test]
async fn imports_docker_save_archives_and_honours_whiteouts_in_an_overlay() {
    // Lower layer (uncompressed): files that the upper layer deletes or hides.
    let lower = tar_of(&[
        Entry::Dir("etc/"),
        Entry::File("etc/keep", b"kept\n"),
        Entry::File("etc/gone", b"deleted by a whiteout\n"),
        Entry::Dir("data/"),
        Entry::File("data/old", b"hidden by an opaque dir\n"),
    ]);
    // Upper layer (gzip): a whiteout, an opaque marker, and a new file.
    let upper = gzip(&tar_of(&[
        Entry::Dir("etc/"),
        Entry::File("etc/.wh.gone", b""),
        Entry::Dir("data/"),
        Entry::File("data/.wh..wh..opq", b""),
        Entry::File("data/new", b"new\n"),
    ]));
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/app"], "Cmd": ["--flag"], "Env": ["A=1"], "WorkingDir": "/data", "User": "65534:65534"},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&lower), sha256(&gunzip(&upper))]},
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_name = format!("{}.json", sha256(&config_bytes).trim_start_matches("sha256:"));
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": ["example.org/test/whiteouts:1", "whiteouts:latest"],
        "Layers": ["aaa/layer.tar", "bbb/layer.tar"],
    }]);
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let archive = tar_of(&[
        Entry::File("manifest.json", &manifest_bytes),
        Entry::File(&config_name, &config_bytes),
        Entry::Dir("aaa/"),
        Entry::File("aaa/layer.tar", &lower),
        Entry::Dir("bbb/"),
        Entry::File("bbb/layer.tar", &upper),
    ]);
    let work = tempfile::tempdir().unwrap();
    // `docker save | gzip` archives are read as well.
    let archive_path = work.path().join("whiteouts.tar.gz");
    fs::write(&archive_path, gzip(&archive)).unwrap();

    let root = work.path().join("store");
    let store = open_store(&root, RegistryConfig::default());
    let refs = store.import_archive(&archive_path).await.unwrap();
    assert_eq!(refs, vec!["example.org/test/whiteouts:1", "docker.io/library/whiteouts:latest"]);
    let image = store.ensure("example.org/test/whiteouts:1", PullPolicy::Never, &[]).await.unwrap();
    assert_eq!(image.id, sha256(&config_bytes));
    assert_eq!(image.config.entrypoint, vec!["/bin/app"]);
    assert_eq!(image.config.cmd, vec!["--flag"]);
    assert_eq!(image.config.env, vec!["A=1"]);
    assert_eq!(image.config.working_dir, "/data");
    assert_eq!(image.config.user, "65534:65534");
    let [lower_dir, upper_dir] = &image.layers[..] else { panic!("two layers: {:?}", image.layers) };
    assert_eq!(fs::read_to_string(lower_dir.join("etc/gone")).unwrap(), "deleted by a whiteout\n");
    assert!(is_whiteout(&upper_dir.join("etc/gone")), "etc/.wh.gone became a 0/0 char device");
    assert!(!upper_dir.join("etc/.wh.gone").exists());
    assert!(is_opaque(&upper_dir.join("data")), "data/ carries trusted.overlay.opaque");
    assert!(!upper_dir.join("data/.wh..wh..opq").exists());
    assert!(!is_opaque(&lower_dir.join("data")));

    // The kernel reads them as intended when the layers are overlay lower dirs.
    let target = work.path().join("merged");
    fs::create_dir(&target).unwrap();
    let options = format!("lowerdir={}:{}", upper_dir.display(), lower_dir.display());
    nix::mount::mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(options.as_str()),
    )
    .expect("mount an overlay of the two layers");
    let _mounted = Mounted(target.clone());
    assert_eq!(fs::read_to_string(target.join("etc/keep")).unwrap(), "kept\n");
    assert!(!target.join("etc/gone").exists(), "the whiteout deletes etc/gone");
    assert!(!target.join("data/old").exists(), "the opaque dir hides data/old");
    assert_eq!(fs::read_to_string(target.join("data/new")).unwrap(), "new\n");
}

/// A layer of a test image: its name in the archive and its tar.
type Layer<'a> = (&'a str, &'a [u8]);

/// A `docker save` archive of images with one config each over the layer tars given.
fn docker_save(images: &[(&str, &[Layer])]) -> Vec<u8> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut manifest = Vec::new();
    for (tag, layers) in images {
        let diff_ids: Vec<String> = layers.iter().map(|(_, tar)| sha256(tar)).collect();
        let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids}});
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let config_name = format!("{}.json", sha256(&config_bytes).trim_start_matches("sha256:"));
        files.push((config_name.clone(), config_bytes));
        for (path, tar) in *layers {
            if !files.iter().any(|(p, _)| p == path) {
                files.push((path.to_string(), tar.to_vec()));
            }
        }
        manifest.push(serde_json::json!({"Config": config_name, "RepoTags": [tag],
            "Layers": layers.iter().map(|(p, _)| *p).collect::<Vec<_>>()}));
    }
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let mut entries = vec![Entry::File("manifest.json", &manifest_bytes)];
    entries.extend(files.iter().map(|(p, d)| Entry::File(p, d)));
    tar_of(&entries)
}

#[tokio::test]
async fn docker_save_archives_share_layers_and_hostile_layers_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    let store = open_store(&root, RegistryConfig::default());

    // Two images naming the same layer file, as docker save writes shared layers.
    let base = tar_of(&[Entry::Dir("bin/"), Entry::File("bin/tool", b"tool\n")]);
    let extra = tar_of(&[Entry::File("extra", b"extra\n")]);
    let archive = docker_save(&[
        ("example.org/one:1", &[("base/layer.tar", &base)]),
        ("example.org/two:1", &[("base/layer.tar", &base), ("extra/layer.tar", &extra)]),
    ]);
    let path = work.path().join("two.tar");
    fs::write(&path, archive).unwrap();
    assert_eq!(store.import_archive(&path).await.unwrap(), vec!["example.org/one:1", "example.org/two:1"]);
    let one = store.ensure("example.org/one:1", PullPolicy::Never, &[]).await.unwrap();
    let two = store.ensure("example.org/two:1", PullPolicy::Never, &[]).await.unwrap();
    assert_eq!(one.layers[0], two.layers[0]);
    assert_eq!(fs::read_to_string(two.layers[1].join("extra")).unwrap(), "extra\n");

    // A layer whose whiteout would reach outside it through a symlink.
    let outside = work.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), "must survive\n").unwrap();
    let outside_text = outside.display().to_string();
    let hostile = tar_of(&[Entry::Symlink("escape", &outside_text), Entry::File("escape/.wh.victim", b"")]);
    let path = work.path().join("hostile.tar");
    fs::write(&path, docker_save(&[("example.org/hostile:1", &[("h/layer.tar", &hostile)])])).unwrap();
    let err = store.import_archive(&path).await.unwrap_err();
    assert!(matches!(err, ImageError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("escape"), "{err}");
    assert_eq!(fs::read_to_string(outside.join("victim")).unwrap(), "must survive\n");
    assert!(store.ensure("example.org/hostile:1", PullPolicy::Never, &[]).await.is_err());
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);

    // A layer that does not match its diff_id in the config.
    let config_lies = docker_save(&[("example.org/lies:1", &[("l/layer.tar", &base)])]);
    let lies = String::from_utf8_lossy(&config_lies).replace(&sha256(&base), &sha256(b"other")).into_bytes();
    let path = work.path().join("lies.tar");
    fs::write(&path, lies).unwrap();
    let err = store.import_archive(&path).await.unwrap_err();
    assert!(err.to_string().contains("the image config says"), "{err}");
}

#[tokio::test]
async fn tampered_archives_and_bad_references_are_refused() {
    let images = TestImages::build();
    let work = tempfile::tempdir().unwrap();
    // Flip one byte of the big layer blob inside the OCI archive.
    let unpacked = work.path().join("unpacked");
    tar::Archive::new(fs::File::open(images.join("busybox.oci.tar")).unwrap()).unpack(&unpacked).unwrap();
    let blobs = unpacked.join("blobs/sha256");
    let biggest = fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(&biggest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&biggest, bytes).unwrap();
    let tampered = work.path().join("tampered.tar");
    let mut builder = tar::Builder::new(fs::File::create(&tampered).unwrap());
    builder.append_dir_all(".", &unpacked).unwrap();
    builder.finish().unwrap();

    let root = work.path().join("store");
    let store = open_store(&root, RegistryConfig::default());
    let err = store.import_archive(&tampered).await.unwrap_err().to_string();
    assert!(err.contains("failed verification") || err.contains("not the expected"), "{err}");
    assert!(store.list().unwrap().is_empty());
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0, "the unpacked archive is cleaned up");

    let not_an_archive = work.path().join("junk.tar");
    fs::write(&not_an_archive, b"this is not a tar file at all").unwrap();
    let err = store.import_archive(&not_an_archive).await.unwrap_err().to_string();
    assert!(err.contains("neither") || err.contains("not a readable tar"), "{err}");

    for (image, why) in [
        ("Busybox", "must be lowercase"),
        ("busybox:", "tag"),
        ("busybox@sha256:1234", "64 lowercase hex"),
        ("my registry/x", "whitespace"),
        ("", "empty"),
    ] {
        let err = store.ensure(image, PullPolicy::IfNotPresent, &[]).await.unwrap_err();
        assert!(matches!(err, ImageError::Invalid { .. }), "{image:?}: {err}");
        assert!(err.to_string().contains(why), "{image:?}: {err}");
    }
    let err = store.ensure("example.org/absent:1", PullPolicy::Never, &[]).await.unwrap_err();
    assert!(matches!(err, ImageError::NeverPull { .. }));
    assert!(err.to_string().contains("imagePullPolicy is Never"), "{err}");
}

/// Debian's docker-registry serving on a free loopback port from a temp dir; killed
/// (by testkit's Daemon) and removed when dropped.
struct Registry {
    daemon: testkit::Daemon,
    address: String,
    dir: tempfile::TempDir,
}

impl Registry {
    async fn start() -> Registry {
        Registry::start_with(None).await
    }

    /// With `tls` (certificate and key PEM files) it serves HTTPS.
    async fn start_with(tls: Option<(&Path, &Path)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let address = format!("127.0.0.1:{}", testkit::free_port());
        let config = dir.path().join("config.yml");
        let tls = match tls {
            Some((cert, key)) => {
                format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display())
            }
            None => String::new(),
        };
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n  secret: rudder-test\n{tls}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let program = which("docker-registry");
        let daemon = testkit::Daemon::spawn(
            "docker-registry",
            &program,
            &["serve".to_string(), config.display().to_string()],
            &dir.path().join("registry.log"),
        )
        .expect("start docker-registry");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = if tls.is_empty() {
                matches!(testkit::http_get(&address, "/v2/").await, Ok((200, _)))
            } else {
                tokio::net::TcpStream::connect(&address).await.is_ok()
            };
            if up {
                break;
            }
            assert!(Instant::now() < deadline, "docker-registry did not answer on {address}: {}", daemon.log_tail());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Registry { daemon, address, dir }
    }

    /// Pushes an OCI archive's image `archive_ref` with skopeo as `repository:tag`.
    fn push(&self, archive: &Path, archive_ref: &str, repository_tag: &str) {
        let output = Command::new(which("skopeo"))
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci-archive:{}:{archive_ref}", archive.display()))
            .arg(format!("docker://{}/{repository_tag}", self.address))
            .output()
            .expect("run skopeo");
        assert!(
            output.status.success(),
            "skopeo copy failed: {}\nregistry log: {}",
            String::from_utf8_lossy(&output.stderr),
            self.daemon.log_tail()
        );
    }

    /// The registry's stored file for blob `digest`.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir.path().join("data/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }

    /// Settings mapping `mydocker.io:5000` (as in the zhidan manifests) to this registry.
    fn mirrored(&self) -> RegistryConfig {
        RegistryConfig {
            registries: vec![RegistryHost {
                host: "mydocker.io:5000".into(),
                mirror: Some(self.address.clone()),
                insecure: true,
                ca_file: None,
            }],
        }
    }
}

fn which(program: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/bin", "/usr/sbin"]) {
        let path = Path::new(dir).join(program);
        if path.is_file() {
            return path;
        }
    }
    panic!("{program} is not installed: run deploy/install-deps.sh (Debian package {program})");
}

#[tokio::test]
async fn pulls_from_a_loopback_registry_through_a_mirror_mapping() {
    let images = TestImages::build();
    let registry = Registry::start().await;
    registry.push(&images.join("httpd.oci.tar"), "rudder/httpd:test", "zhidan-web:0.1");
    let root = tempfile::tempdir().unwrap();
    let store = open_store(root.path(), registry.mirrored());
    // The registry asks for no credentials; offering some must not get in the way.
    let auth = [RegistryAuth { registry: "mydocker.io:5000".into(), username: "u".into(), password: "p".into() }];

    let image = store.ensure("mydocker.io:5000/zhidan-web:0.1", PullPolicy::IfNotPresent, &auth).await.unwrap();
    assert_eq!(image.reference, "mydocker.io:5000/zhidan-web:0.1");
    assert_eq!(image.config.cmd, vec!["/usr/local/bin/serve-hostname"]);
    assert_eq!(image.layers.len(), 2);
    assert!(image.layers[0].join("bin/busybox").is_file());
    assert!(image.layers[1].join("usr/local/bin/serve-hostname").is_file());
    assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);

    // Present now: Never finds it, and so does a reference by manifest digest.
    let again = store.ensure("mydocker.io:5000/zhidan-web:0.1", PullPolicy::Never, &[]).await.unwrap();
    assert_eq!(again.id, image.id);
    let pinned = format!("mydocker.io:5000/zhidan-web@{}", image.manifest_digest);
    assert_eq!(store.ensure(&pinned, PullPolicy::Never, &[]).await.unwrap().id, image.id);

    // The tag moves to another image: IfNotPresent keeps what is here, Always re-resolves.
    registry.push(&images.join("busybox.oci.tar"), "rudder/busybox:test", "zhidan-web:0.1");
    let kept = store.ensure("mydocker.io:5000/zhidan-web:0.1", PullPolicy::IfNotPresent, &[]).await.unwrap();
    assert_eq!(kept.id, image.id);
    let moved = store.ensure("mydocker.io:5000/zhidan-web:0.1", PullPolicy::Always, &[]).await.unwrap();
    assert_ne!(moved.id, image.id);
    assert_eq!(moved.config.cmd, vec!["sh"]);
    assert_eq!(moved.layers, vec![image.layers[0].clone()], "the shared busybox layer is reused");

    // What the registry does not have: its own error, with the image named.
    let err = store.ensure("mydocker.io:5000/zhidan-web:9.9", PullPolicy::IfNotPresent, &[]).await.unwrap_err();
    assert!(matches!(err, ImageError::Pull { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("mydocker.io:5000/zhidan-web:9.9") && message.contains("404"), "{message}");
    assert!(message.contains("MANIFEST_UNKNOWN"), "{message}");
}

#[tokio::test]
async fn a_blob_that_does_not_match_its_digest_is_rejected() {
    let images = TestImages::build();
    let registry = Registry::start().await;
    registry.push(&images.join("busybox.oci.tar"), "rudder/busybox:test", "rudder/busybox:test");
    // Learn the layer's digest from an import of the same archive.
    let probe_root = tempfile::tempdir().unwrap();
    let probe = open_store(probe_root.path(), RegistryConfig::default());
    let refs = probe.import_archive(&images.join("busybox.oci.tar")).await.unwrap();
    let local = probe.ensure(&refs[0], PullPolicy::Never, &[]).await.unwrap();
    let manifest_file =
        probe_root.path().join("blobs/sha256").join(local.manifest_digest.trim_start_matches("sha256:"));
    let manifest: serde_json::Value = serde_json::from_slice(&fs::read(manifest_file).unwrap()).unwrap();
    let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap().to_string();
    // Corrupt it in the registry's storage: same size, one byte flipped.
    let blob = registry.blob_file(&layer_digest);
    let mut bytes = fs::read(&blob).expect("the registry stores the layer blob");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fs::write(&blob, bytes).unwrap();

    let root = tempfile::tempdir().unwrap();
    let store = open_store(root.path(), registry.mirrored());
    let err = store.ensure("mydocker.io:5000/rudder/busybox:test", PullPolicy::Always, &[]).await.unwrap_err();
    assert!(matches!(err, ImageError::Pull { .. }), "{err}");
    assert!(err.to_string().contains("failed verification"), "{err}");
    assert!(err.to_string().contains(&layer_digest), "{err}");
    assert!(store.list().unwrap().is_empty(), "nothing is recorded");
    assert!(!root.path().join("blobs/sha256").join(layer_digest.trim_start_matches("sha256:")).exists());
    assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0, "the download is removed");

    // A reference pinning a digest the registry does not have is refused too.
    let wrong = format!("mydocker.io:5000/rudder/busybox@sha256:{}", "0".repeat(64));
    let err = store.ensure(&wrong, PullPolicy::IfNotPresent, &[]).await.unwrap_err();
    assert!(matches!(err, ImageError::Pull { .. }), "{err}");
}

/// A loopback front for a registry that demands credentials, as Docker Hub (bearer
/// tokens from a token server that checks a user name and password) or a plain
/// registry with basic auth does, then forwards the request to the real registry.
struct AuthFront {
    address: String,
    tokens_issued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone, Copy, PartialEq)]
enum Scheme {
    Bearer,
    Basic,
}

const USER: &str = "puller";
const PASSWORD: &str = "s3cret";
const TOKEN: &str = "token-for-puller";

impl AuthFront {
    async fn start(backend: &str, scheme: Scheme) -> AuthFront {
        use base64::Engine as _;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let tokens_issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}")));
        let (backend, front, issued) = (backend.to_string(), address.clone(), tokens_issued.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                let (backend, front, issued, basic) = (backend.clone(), front.clone(), issued.clone(), basic.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
                        if client.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let text = String::from_utf8_lossy(&head).to_string();
                    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let authorization = text
                        .lines()
                        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("authorization")))
                        .map(|(_, v)| v.trim().to_string());
                    let reply = |status: &str, headers: &str, body: &str| {
                        format!(
                            "HTTP/1.1 {status}\r\n{headers}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    };
                    let answer = if path.starts_with("/token") {
                        if authorization.as_deref() == Some(basic.as_str()) && path.contains("scope=repository") {
                            issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            reply("200 OK", "", &format!(r#"{{"token":"{TOKEN}"}}"#))
                        } else {
                            reply("401 Unauthorized", "", r#"{"details":"bad credentials"}"#)
                        }
                    } else {
                        let (expected, challenge) = match scheme {
                            Scheme::Bearer => (
                                format!("Bearer {TOKEN}"),
                                format!(r#"Bearer realm="http://{front}/token",service="test-registry""#),
                            ),
                            Scheme::Basic => (basic.clone(), r#"Basic realm="test-registry""#.to_string()),
                        };
                        if authorization.as_deref() == Some(expected.as_str()) {
                            let Ok(mut upstream) = tokio::net::TcpStream::connect(&backend).await else { return };
                            if upstream.write_all(&head).await.is_err() {
                                return;
                            }
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                            return;
                        }
                        reply(
                            "401 Unauthorized",
                            &format!("www-authenticate: {challenge}\r\n"),
                            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                        )
                    };
                    let _ = client.write_all(answer.as_bytes()).await;
                });
            }
        });
        AuthFront { address, tokens_issued, task }
    }
}

impl Drop for AuthFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn fronted(address: &str) -> RegistryConfig {
    RegistryConfig {
        registries: vec![RegistryHost {
            host: "private.example:5000".into(),
            mirror: Some(address.to_string()),
            insecure: true,
            ca_file: None,
        }],
    }
}

#[tokio::test]
async fn pulls_with_bearer_tokens_and_basic_auth_from_pull_secrets() {
    let images = TestImages::build();
    let registry = Registry::start().await;
    registry.push(&images.join("busybox.oci.tar"), "rudder/busybox:test", "team/busybox:1");
    let image = "private.example:5000/team/busybox:1";
    let good =
        [RegistryAuth { registry: "private.example:5000".into(), username: USER.into(), password: PASSWORD.into() }];
    let bad =
        [RegistryAuth { registry: "private.example:5000".into(), username: USER.into(), password: "wrong".into() }];

    let bearer = AuthFront::start(&registry.address, Scheme::Bearer).await;
    let root = tempfile::tempdir().unwrap();
    let store = open_store(root.path(), fronted(&bearer.address));
    let err = store.ensure(image, PullPolicy::IfNotPresent, &[]).await.unwrap_err();
    assert!(matches!(err, ImageError::Pull { .. }), "{err}");
    assert!(err.to_string().contains("imagePullSecret"), "no credentials: {err}");
    let err = store.ensure(image, PullPolicy::IfNotPresent, &bad).await.unwrap_err();
    assert!(err.to_string().contains("refused"), "wrong password: {err}");
    // Credentials for another registry are not sent.
    let elsewhere = [RegistryAuth { registry: "docker.io".into(), username: USER.into(), password: PASSWORD.into() }];
    assert!(store.ensure(image, PullPolicy::IfNotPresent, &elsewhere).await.is_err());
    let pulled = store.ensure(image, PullPolicy::IfNotPresent, &good).await.unwrap();
    assert_eq!(pulled.config.cmd, vec!["sh"]);
    assert!(pulled.layers[0].join("bin/busybox").is_file());
    assert!(bearer.tokens_issued.load(std::sync::atomic::Ordering::SeqCst) >= 1);

    let basic = AuthFront::start(&registry.address, Scheme::Basic).await;
    let root = tempfile::tempdir().unwrap();
    let store = open_store(root.path(), fronted(&basic.address));
    let err = store.ensure(image, PullPolicy::IfNotPresent, &[]).await.unwrap_err();
    assert!(err.to_string().contains("imagePullSecret"), "no credentials: {err}");
    let err = store.ensure(image, PullPolicy::IfNotPresent, &bad).await.unwrap_err();
    assert!(err.to_string().contains("401") && err.to_string().contains("refused"), "wrong password: {err}");
    // A .dockerconfigjson key may be a URL.
    let url_keyed = [RegistryAuth { registry: "https://private.example:5000/".into(), ..good[0].clone() }];
    let pulled = store.ensure(image, PullPolicy::IfNotPresent, &url_keyed).await.unwrap();
    assert_eq!(pulled.config.cmd, vec!["sh"]);
}

fn openssl(args: &[&str], dir: &Path) {
    let output = Command::new(which("openssl")).args(args).current_dir(dir).output().expect("run openssl");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test]
async fn pulls_over_https_trusting_a_configured_ca() {
    let images = TestImages::build();
    // A CA and a certificate it issues for 127.0.0.1.
    let pki = tempfile::tempdir().unwrap();
    let dir = pki.path();
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=rudder test CA",
        ],
        dir,
    );
    openssl(
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        dir,
    );
    fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
        dir,
    );
    let registry = Registry::start_with(Some((&dir.join("server.pem"), &dir.join("server.key")))).await;
    registry.push(&images.join("busybox.oci.tar"), "rudder/busybox:test", "secure/busybox:1");
    let settings = |ca_file: Option<PathBuf>| RegistryConfig {
        registries: vec![RegistryHost {
            host: "secure.example:443".into(),
            mirror: Some(registry.address.clone()),
            insecure: false,
            ca_file,
        }],
    };
    let image = "secure.example:443/secure/busybox:1";

    // Without the CA the certificate is not trusted.
    let root = tempfile::tempdir().unwrap();
    let store = open_store(root.path(), settings(None));
    let err = store.ensure(image, PullPolicy::IfNotPresent, &[]).await.unwrap_err();
    assert!(matches!(err, ImageError::Pull { .. }), "{err}");
    assert!(err.to_string().contains("TLS") || err.to_string().contains("certificate"), "{err}");

    let store = open_store(root.path(), settings(Some(dir.join("ca.pem"))));
    let pulled = store.ensure(image, PullPolicy::IfNotPresent, &[]).await.unwrap();
    assert_eq!(pulled.config.cmd, vec!["sh"]);

    // A CA file that is not PEM is a configuration error at start, naming the file.
    fs::write(dir.join("junk.pem"), "not a certificate").unwrap();
    let err = ImageStore::open(root.path(), settings(Some(dir.join("junk.pem")))).err().expect("junk CA refused");
    assert!(matches!(err, ImageError::Config(_)) && err.to_string().contains("junk.pem"), "{err}");
}
