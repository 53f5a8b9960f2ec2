//! Local Docker images for the real-engine tests, built from what is on this machine because no
//! registry can be reached: `promfleet-test/node-exporter:local` (Debian's
//! prometheus-node-exporter in a `FROM scratch` image, with the libraries `ldd` names) and
//! `promfleet-test/cadvisor:local` (a cAdvisor STAND-IN: `src/bin/fake-cadvisor-static.rs`
//! compiled statically with the host's rustc).
//!
//! Owns only those two tags. Every input (Dockerfile, binaries, libraries, the stand-in's source
//! and the rustc version) is hashed into the image label [`INPUTS_LABEL`]; an image whose label
//! matches is reused, so a warm call costs two `docker image inspect`s.

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

/// Image label holding the hash of the build inputs.
pub const INPUTS_LABEL: &str = "org.promfleet.testkit.inputs";
/// Repository of the node-exporter image.
pub const NODE_EXPORTER_REPO: &str = "promfleet-test/node-exporter";
/// Repository of the cAdvisor stand-in image.
pub const CADVISOR_REPO: &str = "promfleet-test/cadvisor";
/// Tag of both images.
pub const TAG: &str = "local";
/// Debian's node-exporter binary; `PROMFLEET_TEST_NODE_EXPORTER` overrides it.
const NODE_EXPORTER_BIN: &str = "/usr/bin/prometheus-node-exporter";
/// Bumped when the staging logic changes in a way the hashed inputs do not show.
const RECIPE_VERSION: &str = "1";

/// A local image: repository and tag, as the inventory vars `*_image` / `*_tag` take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// e.g. `promfleet-test/node-exporter`.
    pub repository: String,
    /// e.g. `local`.
    pub tag: String,
}

impl ImageRef {
    /// `repository:tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }
}

/// The two exporter images, built and tagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalImages {
    /// node-exporter (listens on :9100 in the container).
    pub node_exporter: ImageRef,
    /// cAdvisor stand-in (listens on :8080 in the container).
    pub cadvisor: ImageRef,
}

impl LocalImages {
    /// Inventory vars that point the exporter compose template at these images.
    pub fn inventory_vars(&self) -> [(&'static str, String); 4] {
        [
            ("node_exporter_image", self.node_exporter.repository.clone()),
            ("node_exporter_tag", self.node_exporter.tag.clone()),
            ("cadvisor_image", self.cadvisor.repository.clone()),
            ("cadvisor_tag", self.cadvisor.tag.clone()),
        ]
    }
}

/// Why the Docker engine cannot be used here (`None`: `docker info` answered).
pub fn docker_unavailable() -> Option<String> {
    match Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
    {
        Err(e) => Some(format!("cannot run `docker`: {e}")),
        Ok(out) if !out.status.success() => Some(format!(
            "`docker info` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    }
}

/// Build (or reuse) both images; safe to call from many tests at once.
pub fn ensure_local_images() -> Result<LocalImages> {
    // Tests of one binary share the result; separate processes may race to build, which only
    // costs time: both produce the same image.
    static BUILT: Mutex<Option<LocalImages>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(images) = built.as_ref() {
        return Ok(images.clone());
    }
    let images = LocalImages {
        node_exporter: ensure(&NodeExporter::locate()?)?,
        cadvisor: ensure(&CadvisorStandin::locate()?)?,
    };
    *built = Some(images.clone());
    Ok(images)
}

/// One image's recipe: what to hash and how to fill the build context.
trait Recipe {
    fn image(&self) -> ImageRef;
    /// Directory with the Dockerfile (under `testkit/images/`).
    fn context(&self) -> PathBuf;
    /// Feed every input that changes the image into `h`.
    fn hash_inputs(&self, h: &mut DefaultHasher) -> Result<()>;
    /// Put the image's files under `rootfs`.
    fn stage(&self, rootfs: &Path) -> Result<()>;
}

fn images_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("images")
}

fn ensure(recipe: &dyn Recipe) -> Result<ImageRef> {
    let image = recipe.image();
    let reference = image.reference();
    let dockerfile = recipe.context().join("Dockerfile");
    // DefaultHasher may change between Rust releases; that only costs one rebuild.
    let mut h = DefaultHasher::new();
    h.write(RECIPE_VERSION.as_bytes());
    h.write(&std::fs::read(&dockerfile).with_context(|| format!("read {}", dockerfile.display()))?);
    recipe.hash_inputs(&mut h)?;
    let inputs = format!("{:016x}", h.finish());

    let (old_id, old_inputs) = inspect(&reference)?;
    if old_inputs.as_deref() == Some(inputs.as_str()) {
        return Ok(image);
    }
    let staging = tempfile::Builder::new()
        .prefix("pf-image-")
        .tempdir()
        .context("create a build context dir")?;
    std::fs::copy(&dockerfile, staging.path().join("Dockerfile"))
        .with_context(|| format!("copy {}", dockerfile.display()))?;
    let rootfs = staging.path().join("rootfs");
    std::fs::create_dir(&rootfs)?;
    recipe
        .stage(&rootfs)
        .with_context(|| format!("stage the files of {reference}"))?;
    let out = Command::new("docker")
        // The legacy builder is always there; BuildKit needs the buildx plugin.
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "--quiet", "--label"])
        .arg(format!("{INPUTS_LABEL}={inputs}"))
        .args(["--tag", &reference])
        .arg(staging.path())
        .output()
        .context("run docker build")?;
    check(&out, &format!("docker build of {reference}"))?;
    // The previous build is now untagged; drop it unless a container still uses it.
    if let Some(old) = old_id {
        let _ = Command::new("docker").args(["image", "rm", &old]).output();
    }
    Ok(image)
}

/// Image id and inputs label of `reference`, `(None, None)` when it does not exist.
fn inspect(reference: &str) -> Result<(Option<String>, Option<String>)> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format"])
        .arg(format!(
            "{{{{.Id}}}} {{{{index .Config.Labels \"{INPUTS_LABEL}\"}}}}"
        ))
        .arg(reference)
        .output()
        .context("run docker image inspect")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No such image") || err.contains("No such object") {
            return Ok((None, None));
        }
        bail!("docker image inspect {reference}: {}", err.trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace();
    let id = fields.next().map(str::to_string);
    // A missing label prints `<no value>`.
    let label = fields
        .next()
        .filter(|l| !l.starts_with('<'))
        .map(str::to_string);
    Ok((id, label))
}

fn check(out: &Output, what: &str) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    bail!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// Copy `src` into `rootfs` at the same absolute path (`rootfs/<src>` or `rootfs/<dest>`).
fn place(rootfs: &Path, src: &Path, dest: &Path) -> Result<()> {
    let target = rootfs.join(dest.strip_prefix("/").unwrap_or(dest));
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // fs::copy follows symlinks: the image gets the real library under the name asked for.
    std::fs::copy(src, &target)
        .with_context(|| format!("copy {} to {}", src.display(), target.display()))?;
    Ok(())
}

struct NodeExporter {
    binary: PathBuf,
    libs: Vec<PathBuf>,
}

impl NodeExporter {
    fn locate() -> Result<Self> {
        let binary = std::env::var_os("PROMFLEET_TEST_NODE_EXPORTER")
            .map_or_else(|| PathBuf::from(NODE_EXPORTER_BIN), PathBuf::from);
        if !binary.is_file() {
            bail!(
                "{} not found: install Debian's prometheus-node-exporter (or set PROMFLEET_TEST_NODE_EXPORTER)",
                binary.display()
            );
        }
        let libs = shared_libraries(&binary)?;
        Ok(NodeExporter { binary, libs })
    }
}

/// Absolute paths of the shared libraries (and the loader) `ldd` lists; empty when static.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("not a dynamic executable") {
        return Ok(Vec::new());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux… (0x…)`;
        // linux-vdso has no file.
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        } else if line.contains("not found") {
            bail!("{}: missing library: {}", binary.display(), line.trim());
        }
    }
    Ok(libs)
}

impl Recipe for NodeExporter {
    fn image(&self) -> ImageRef {
        ImageRef {
            repository: NODE_EXPORTER_REPO.into(),
            tag: TAG.into(),
        }
    }
    fn context(&self) -> PathBuf {
        images_dir().join("node-exporter")
    }
    fn hash_inputs(&self, h: &mut DefaultHasher) -> Result<()> {
        for f in std::iter::once(&self.binary).chain(&self.libs) {
            h.write(f.as_os_str().as_encoded_bytes());
            h.write(&std::fs::read(f).with_context(|| format!("read {}", f.display()))?);
        }
        Ok(())
    }
    fn stage(&self, rootfs: &Path) -> Result<()> {
        place(rootfs, &self.binary, Path::new("/bin/node_exporter"))?;
        for lib in &self.libs {
            place(rootfs, lib, lib)?;
        }
        Ok(())
    }
}

struct CadvisorStandin {
    source: PathBuf,
    rustc: String,
    rustc_version: String,
}

impl CadvisorStandin {
    fn locate() -> Result<Self> {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin/fake-cadvisor-static.rs");
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let out = Command::new(&rustc)
            .arg("-vV")
            .output()
            .with_context(|| format!("run {rustc} -vV"))?;
        check(&out, "rustc -vV")?;
        Ok(CadvisorStandin {
            source,
            rustc,
            rustc_version: String::from_utf8_lossy(&out.stdout).into_owned(),
        })
    }
}

impl Recipe for CadvisorStandin {
    fn image(&self) -> ImageRef {
        ImageRef {
            repository: CADVISOR_REPO.into(),
            tag: TAG.into(),
        }
    }
    fn context(&self) -> PathBuf {
        images_dir().join("cadvisor")
    }
    fn hash_inputs(&self, h: &mut DefaultHasher) -> Result<()> {
        h.write(self.rustc_version.as_bytes());
        h.write(
            &std::fs::read(&self.source)
                .with_context(|| format!("read {}", self.source.display()))?,
        );
        Ok(())
    }
    fn stage(&self, rootfs: &Path) -> Result<()> {
        let bin = rootfs.join("bin");
        std::fs::create_dir_all(&bin)?;
        // glibc linked statically (no musl target here): the stand-in uses no NSS/DNS, the
        // one part of glibc that cannot be static.
        let out = Command::new(&self.rustc)
            .args([
                "--edition",
                "2024",
                "-C",
                "opt-level=2",
                "-C",
                "strip=symbols",
            ])
            .args([
                "-C",
                "panic=abort",
                "-C",
                "target-feature=+crt-static",
                "-o",
            ])
            .arg(bin.join("fake-cadvisor"))
            .arg(&self.source)
            .output()
            .with_context(|| format!("run {}", self.rustc))?;
        check(&out, "compiling the cAdvisor stand-in")
    }
}
