//! Where the namespaces of a node live on the machine, and creating/deleting named namespaces the
//! way `ip netns add`/`del` do (a bind mount of a new net namespace on `/run/netns/NAME`), with
//! libc rather than by running `ip`.
//!
//! Mapping ([`NetnsMap`]): without a root, the node's host namespace is the namespace of the
//! calling process and `netns "x"` is `/run/netns/x`. With a root `R` (`--netns-root R`), the
//! host namespace is `/run/netns/R` and `netns "x"` is `/run/netns/R-x`, so a whole node can be
//! tried inside namespaces without touching the machine's own network.
//!
//! Namespaces netcfg creates are remembered by a marker file `/run/netcfg/netns/PATHNAME`
//! holding the node name and the node root (`machine` without one); only namespaces whose
//! marker names exactly this node and this root are ever claimed or deleted (never by a prefix
//! of the path name: root `X` must not claim `X-lab-pod`, made for root `X-lab`). A marker
//! in the older one-line form (node only) is ambiguous and claimed by no one. Existing links (NICs) netcfg
//! moved into a namespace are remembered by `/run/netcfg/netns/.links/PATHNAME/LINK` holding
//! the node name and the link's ifindex; only those are moved back when the spec drops them.

use crate::nftables::exec::Target;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use super::state::{NsName, HOST};

const NETNS_DIR: &str = "/run/netns";
const MARKER_DIR: &str = "/run/netcfg/netns";
/// The directory under the marker directory for links moved into namespaces (no namespace
/// marker has this name: spec names never start with `.`).
const LINK_MARKERS: &str = ".links";

/// Where one namespace of the node is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Location {
    /// The namespace of the calling process.
    Current,
    /// `/run/netns/NAME`.
    Named(String),
}

impl Location {
    pub fn nft_target(&self) -> Target {
        match self {
            Location::Current => Target::Current,
            Location::Named(n) => Target::Named(n.clone()),
        }
    }

    /// The file to open to refer to this namespace (for `setns` and `IFLA_NET_NS_FD`).
    pub fn path(&self) -> PathBuf {
        match self {
            Location::Current => PathBuf::from("/proc/self/ns/net"),
            Location::Named(n) => Path::new(NETNS_DIR).join(n),
        }
    }

    pub fn open(&self) -> io::Result<File> {
        let p = self.path();
        File::open(&p).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))
    }

    /// Whether the namespace is there: a mounted namespace, not merely the file (a name that
    /// `ip netns add` or netcfg was killed in the middle of making is an empty file).
    pub fn exists(&self) -> bool {
        match self {
            Location::Current => true,
            Location::Named(_) => is_netns_mount(&self.path()),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Current => f.write_str("the current namespace"),
            Location::Named(n) => write!(f, "{NETNS_DIR}/{n}"),
        }
    }
}

/// Maps the namespaces of a node to namespaces of the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetnsMap {
    /// `None`: the node is the machine itself.
    pub root: Option<String>,
    /// Where creation markers live (tests may point it elsewhere).
    pub marker_dir: PathBuf,
    /// The modules-load.d file that keeps the node's kernel modules loaded across reboots:
    /// only when the node is the machine itself (tests may point it elsewhere).
    pub modules_load: Option<PathBuf>,
}

impl NetnsMap {
    /// The node is this machine.
    pub fn machine() -> NetnsMap {
        NetnsMap {
            root: None,
            marker_dir: PathBuf::from(MARKER_DIR),
            modules_load: Some(PathBuf::from(crate::kernel::MODULES_LOAD_FILE)),
        }
    }

    /// The node lives in `/run/netns/ROOT`, its namespaces in `/run/netns/ROOT-NAME`.
    pub fn rooted(root: &str) -> NetnsMap {
        NetnsMap { root: Some(root.to_string()), marker_dir: PathBuf::from(MARKER_DIR), modules_load: None }
    }

    pub fn locate(&self, ns: &str) -> Location {
        match (&self.root, ns == HOST) {
            (None, true) => Location::Current,
            (Some(r), true) => Location::Named(r.clone()),
            (None, false) => Location::Named(ns.to_string()),
            (Some(r), false) => Location::Named(format!("{r}-{ns}")),
        }
    }

    /// The spec name of a machine namespace name, if it belongs to this map.
    fn spec_name(&self, path_name: &str) -> Option<NsName> {
        match &self.root {
            None => Some(path_name.to_string()),
            Some(r) => path_name.strip_prefix(r.as_str())?.strip_prefix('-').map(str::to_string),
        }
    }

    fn marker(&self, path_name: &str) -> PathBuf {
        self.marker_dir.join(path_name)
    }

    /// How markers name the root of this map: the root, or `machine` without one.
    fn root_key(&self) -> &str {
        self.root.as_deref().unwrap_or("machine")
    }

    /// The text of a namespace marker for `node` under this map.
    fn marker_text(&self, node: &str) -> String {
        format!("{node}\n{}\n", self.root_key())
    }

    /// Namespaces netcfg created for `node` under this root (marked so), by spec name.
    pub fn created_namespaces(&self, node: &str) -> Vec<NsName> {
        let mut out: Vec<NsName> = self.marked(node).into_iter().filter(|n| self.locate(n).exists()).collect();
        out.sort();
        out
    }

    /// The spec names whose marker names `node` under this root, mounted or not.
    fn marked(&self, node: &str) -> Vec<NsName> {
        let Ok(dir) = fs::read_dir(&self.marker_dir) else { return Vec::new() };
        let want = self.marker_text(node);
        dir.filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            // `.links` and temporary files of an interrupted write.
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| {
                let file = e.file_name().to_string_lossy().into_owned();
                let owner = crate::runfs::read(&e.path()).ok()??;
                let name = self.spec_name(&file)?;
                // The marker names this node and root, and the path is the one this map gives
                // that spec name (the round trip rules out a prefix match).
                (owner == want && self.locate(&name) == Location::Named(file)).then_some(name)
            })
            .collect()
    }

    /// Removes what a creation killed halfway left of `node`'s namespaces: a marker whose name
    /// holds no mounted namespace, and the plain file `create_named` made before mounting. The
    /// marker, written first, says netcfg made them; neither holds anything.
    pub fn remove_half_made(&self, node: &str) -> io::Result<()> {
        for ns in self.marked(node) {
            let Location::Named(name) = self.locate(&ns) else { continue };
            let path = Path::new(NETNS_DIR).join(&name);
            if is_netns_mount(&path) {
                continue;
            }
            not_found_ok(fs::remove_file(&path))?;
            not_found_ok(fs::remove_dir_all(self.marker_dir.join(LINK_MARKERS).join(&name)))?;
            not_found_ok(fs::remove_file(self.marker(&name)))?;
        }
        Ok(())
    }

    /// Creates namespace `ns` of `node` and marks it as netcfg's.
    pub fn create(&self, node: &str, ns: &str) -> io::Result<()> {
        let Location::Named(name) = self.locate(ns) else {
            return Err(io::Error::other("the current namespace cannot be created"));
        };
        // The marker first: a kill between the two leaves a marker without a namespace (which
        // claims nothing), never a namespace of netcfg's that no marker names.
        crate::runfs::write_atomic(&self.marker(&name), self.marker_text(node).as_bytes())?;
        create_named(&name).inspect_err(|_| {
            let _ = fs::remove_file(self.marker(&name));
        })
    }

    /// Deletes namespace `ns` (its name; processes inside keep it alive) and its marker.
    pub fn delete(&self, ns: &str) -> io::Result<()> {
        let Location::Named(name) = self.locate(ns) else {
            return Err(io::Error::other("the current namespace cannot be deleted"));
        };
        delete_named(&name)?;
        not_found_ok(fs::remove_dir_all(self.marker_dir.join(LINK_MARKERS).join(&name)))?;
        not_found_ok(fs::remove_file(self.marker(&name)))
    }

    /// The marker of a link netcfg moved into namespace `ns` (`None` for the host namespace,
    /// where links are moved back to and never marked).
    fn link_marker(&self, ns: &str, link: &str) -> Option<PathBuf> {
        match self.locate(ns) {
            Location::Named(name) if ns != HOST => Some(self.marker_dir.join(LINK_MARKERS).join(name).join(link)),
            _ => None,
        }
    }

    /// Remembers that netcfg moved `link` (ifindex `index`) into namespace `ns` of `node`.
    pub fn mark_moved(&self, node: &str, ns: &str, link: &str, index: u32) -> io::Result<()> {
        let Some(path) = self.link_marker(ns, link) else { return Ok(()) };
        crate::runfs::ensure_dir(&self.marker_dir)?;
        if let Some(dir) = path.parent() {
            crate::runfs::ensure_dir(&self.marker_dir.join(LINK_MARKERS))?;
            crate::runfs::ensure_dir(dir)?;
        }
        crate::runfs::write_atomic(&path, format!("{node}\n{index}\n").as_bytes())
    }

    /// Forgets that netcfg moved `link` into namespace `ns` (no marker is fine).
    pub fn unmark_moved(&self, ns: &str, link: &str) -> io::Result<()> {
        match self.link_marker(ns, link) {
            Some(path) => not_found_ok(fs::remove_file(path)),
            None => Ok(()),
        }
    }

    /// The links netcfg moved into namespace `ns` for `node`, with the ifindex each had: a
    /// live link of that name is the moved one only if its ifindex still matches.
    pub fn moved_links(&self, node: &str, ns: &str) -> std::collections::BTreeMap<String, u32> {
        let mut out = std::collections::BTreeMap::new();
        let Location::Named(name) = self.locate(ns) else { return out };
        if ns == HOST {
            return out;
        }
        let Ok(entries) = fs::read_dir(self.marker_dir.join(LINK_MARKERS).join(name)) else { return out };
        for e in entries.flatten() {
            let Ok(Some(text)) = crate::runfs::read(&e.path()) else { continue };
            let mut lines = text.lines();
            if lines.next().map(str::trim) != Some(node) {
                continue;
            }
            if let Some(index) = lines.next().and_then(|i| i.trim().parse().ok()) {
                out.insert(e.file_name().to_string_lossy().into_owned(), index);
            }
        }
        out
    }
}

fn not_found_ok(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn cstr(p: &Path) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).map_err(io::Error::other)
}

/// `/run/netns` must be a shared mount point so that namespace names made here are seen from
/// other mount namespaces (as `ip netns add` arranges).
fn ensure_netns_dir() -> io::Result<()> {
    fs::create_dir_all(NETNS_DIR)?;
    let dir = cstr(Path::new(NETNS_DIR))?;
    // SAFETY: plain syscalls on valid C strings.
    unsafe {
        if libc::mount(
            std::ptr::null(),
            dir.as_ptr(),
            std::ptr::null(),
            libc::MS_SHARED | libc::MS_REC,
            std::ptr::null(),
        ) == 0
        {
            return Ok(());
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            return Err(io::Error::last_os_error());
        }
        // Not a mount point yet: bind it onto itself, then make it shared.
        if libc::mount(dir.as_ptr(), dir.as_ptr(), std::ptr::null(), libc::MS_BIND | libc::MS_REC, std::ptr::null())
            != 0
        {
            return Err(io::Error::last_os_error());
        }
        if libc::mount(
            std::ptr::null(),
            dir.as_ptr(),
            std::ptr::null(),
            libc::MS_SHARED | libc::MS_REC,
            std::ptr::null(),
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Creates `/run/netns/NAME` holding a new, empty network namespace (with `lo` down, as the
/// kernel makes it). A dedicated thread unshares, so the caller's namespace never changes.
pub fn create_named(name: &str) -> io::Result<()> {
    ensure_netns_dir()?;
    let path = Path::new(NETNS_DIR).join(name);
    // What a creation killed halfway leaves: the file without the namespace mounted on it.
    if path.exists() && !is_netns_mount(&path) {
        fs::remove_file(&path)?;
    }
    File::options()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let target = cstr(&path)?;
    let res = std::thread::spawn(move || -> io::Result<()> {
        // SAFETY: unshare affects this thread only; the thread ends right after the mount.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            let tid = libc::syscall(libc::SYS_gettid);
            let src = std::ffi::CString::new(format!("/proc/self/task/{tid}/ns/net")).map_err(io::Error::other)?;
            if libc::mount(src.as_ptr(), target.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| io::Error::other("namespace thread panicked"))?;
    if res.is_err() {
        let _ = fs::remove_file(&path);
    }
    res
}

/// Whether `path` is a mounted network namespace (nsfs), not a plain file.
fn is_netns_mount(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    let Ok(c) = cstr(path) else { return false };
    // SAFETY: statfs writes into the zeroed struct we pass; the path is a valid C string.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == NSFS_MAGIC
    }
}

/// Removes the name `/run/netns/NAME` (lazy unmount, then the file).
pub fn delete_named(name: &str) -> io::Result<()> {
    let path = Path::new(NETNS_DIR).join(name);
    let c = cstr(&path)?;
    // SAFETY: plain syscall on a valid C string.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) && e.raw_os_error() != Some(libc::ENOENT) {
            return Err(e);
        }
    }
    fs::remove_file(&path)
}

/// Runs `f` inside the namespace at `loc` (on a thread for a named one).
pub fn run_at<T: Send + 'static>(loc: &Location, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    match loc {
        Location::Current => Ok(f()),
        Location::Named(n) => crate::netns::run_in(n, f),
    }
}
