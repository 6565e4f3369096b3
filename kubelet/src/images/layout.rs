//! The store on disk, an OCI image layout under the kubelet's image root:
//!
//! ```text
//! oci-layout                      {"imageLayoutVersion":"1.0.0"}
//! index.json                      one manifest descriptor per image reference (ref.name)
//! blobs/sha256/<hex>              manifests, configs, layer blobs; verified on the way in
//! layers/sha256/<diff_id hex>/    each layer unpacked once, shared by every image using it
//! tmp/                            downloads and unpacks in progress (same filesystem, so
//!                                 finished ones are renamed into place atomically)
//! ```
//! It owns files only; what is pulled or imported is decided by its callers.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::digest::{Digest, HashingReader, HashingWriter};
use super::oci::{Descriptor, Index, OCI_INDEX, REF_NAME};

static TEMP_SEQUENCE: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn open(root: &Path) -> io::Result<Layout> {
        for dir in ["blobs/sha256", "layers/sha256", "tmp"] {
            fs::create_dir_all(root.join(dir))?;
        }
        let marker = root.join("oci-layout");
        if !marker.exists() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let layout = Layout { root: root.to_path_buf() };
        // Leftovers of a download or unpack that a crash interrupted.
        for entry in fs::read_dir(layout.root.join("tmp"))? {
            let path = entry?.path();
            let _ = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        }
        Ok(layout)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers/sha256").join(diff_id.hex())
    }

    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_dir(diff_id).is_dir()
    }

    /// A fresh path under tmp/ (not created).
    pub fn temp_path(&self, what: &str) -> PathBuf {
        let n = TEMP_SEQUENCE.fetch_add(1, Ordering::Relaxed);
        self.root.join("tmp").join(format!("{what}-{}-{n}", std::process::id()))
    }

    /// Stores `bytes` as a blob; when `expected` is given it must be their digest.
    pub fn write_blob(&self, bytes: &[u8], expected: Option<&Digest>) -> Result<Digest, BlobError> {
        let digest = Digest::of(bytes);
        if let Some(expected) = expected
            && expected != &digest
        {
            return Err(BlobError::Mismatch { expected: expected.clone(), actual: digest });
        }
        if !self.has_blob(&digest) {
            let temp = self.temp_path("blob");
            write_atomic_via(&temp, &self.blob_path(&digest), bytes)?;
        }
        Ok(digest)
    }

    /// Puts the file at `source` (usually under tmp/, on the same filesystem) into the store as the blob `expected`, after checking its digest and,
    /// when given, its size.
    pub fn adopt_blob(&self, source: &Path, expected: &Digest, size: Option<u64>) -> Result<(), BlobError> {
        let (actual, len) = HashingReader::new(File::open(source)?).finish()?;
        if &actual != expected {
            return Err(BlobError::Mismatch { expected: expected.clone(), actual });
        }
        if let Some(size) = size
            && size != len
        {
            return Err(BlobError::Size { digest: expected.clone(), expected: size, actual: len });
        }
        // A link, not a rename: an archive may name one file for several images.
        let dest = self.blob_path(expected);
        match fs::hard_link(source, &dest) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(_) => {
                let temp = self.temp_path("blob");
                fs::copy(source, &temp)?;
                fs::rename(&temp, &dest)?;
                Ok(())
            }
        }
    }

    /// Reads a (small) blob and checks it still has its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, BlobError> {
        let bytes = fs::read(self.blob_path(digest))?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(BlobError::Mismatch { expected: digest.clone(), actual });
        }
        Ok(bytes)
    }

    /// The references recorded in index.json.
    pub fn load_refs(&self) -> io::Result<BTreeMap<String, Descriptor>> {
        let path = self.root.join("index.json");
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(e),
        };
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: not an OCI index: {e}", path.display()))
        })?;
        Ok(index
            .manifests
            .into_iter()
            .filter_map(|d| d.annotations.get(REF_NAME).cloned().map(|name| (name, d)))
            .collect())
    }

    pub fn save_refs(&self, refs: &BTreeMap<String, Descriptor>) -> io::Result<()> {
        let index = Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.to_string()),
            manifests: refs
                .iter()
                .map(|(name, d)| {
                    let mut d = d.clone();
                    d.annotations.insert(REF_NAME.to_string(), name.clone());
                    d
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&index).map_err(io::Error::other)?;
        write_atomic(&self.root.join("index.json"), &bytes)
    }

    /// Digests of every blob file present.
    pub fn blobs(&self) -> io::Result<Vec<Digest>> {
        list_digests(&self.root.join("blobs/sha256"))
    }

    /// diff_ids of every unpacked layer present.
    pub fn layers(&self) -> io::Result<Vec<Digest>> {
        list_digests(&self.root.join("layers/sha256"))
    }
}

fn list_digests(dir: &Path) -> io::Result<Vec<Digest>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Ok(digest) = Digest::parse(&format!("sha256:{}", name.to_string_lossy())) {
            out.push(digest);
        }
    }
    Ok(out)
}

/// A blob being written: hashed as it goes, renamed into place only once it has the
/// digest it claims.
pub struct BlobWriter {
    temp: PathBuf,
    writer: HashingWriter<io::BufWriter<File>>,
}

impl BlobWriter {
    pub fn create(layout: &Layout) -> io::Result<BlobWriter> {
        let temp = layout.temp_path("download");
        let file = File::create(&temp)?;
        Ok(BlobWriter { temp, writer: HashingWriter::new(io::BufWriter::with_capacity(1 << 16, file)) })
    }

    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    pub fn written(&self) -> u64 {
        self.writer.written()
    }

    /// Checks digest and size, then moves the blob into the store.
    pub fn commit(self, layout: &Layout, expected: &Digest, size: u64) -> Result<(), BlobError> {
        let temp = self.temp.clone();
        let result = (|| {
            let (actual, len, buf) = self.writer.finish();
            let file = buf.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            if &actual != expected {
                return Err(BlobError::Mismatch { expected: expected.clone(), actual });
            }
            if len != size {
                return Err(BlobError::Size { digest: expected.clone(), expected: size, actual: len });
            }
            fs::rename(&temp, layout.blob_path(expected))?;
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    pub fn abandon(self) {
        let _ = fs::remove_file(&self.temp);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("content has digest {actual}, not the expected {expected}")]
    Mismatch { expected: Digest, actual: Digest },
    #[error("blob {digest} has {actual} bytes, not the expected {expected}")]
    Size { digest: Digest, expected: u64, actual: u64 },
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".tmp-{}", std::process::id()));
    write_atomic_via(Path::new(&temp), path, bytes)
}

fn write_atomic_via(temp: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(temp, path)
}
