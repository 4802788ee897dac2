//! Walking a dataset folder. Every folder listing the loaders make goes through one [`Scan`],
//! which keeps the walk inside the dataset folder and bounded:
//!
//! - a symbolic link that leads outside the dataset folder, or back into a folder the walk is
//!   already in (a cycle), is reported and not followed; a link that stays inside is followed;
//! - at most [`super::LoadOptions::max_files_scanned`] entries are read, then the walk stops
//!   and says so;
//! - [`super::LoadOptions::cancel`] stops it at the next entry.
//!
//! Each folder is read once and remembered, so a loader may list a folder again at no cost and
//! always sees the same entries. The scan lists folders and resolves paths; it never opens a
//! file.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::decode::is_image_path;
use super::diagnostics::{Diagnostic, DiagnosticKind};
use super::LoadOptions;

/// Where a path named by an annotation, a list file or data.yaml leads.
#[derive(Debug)]
pub(crate) enum Resolved {
    /// An existing path inside the dataset.
    Inside(PathBuf),
    /// Every existing candidate lies outside the dataset: where the first one leads.
    Outside(PathBuf),
    /// No candidate exists.
    Missing,
}

/// The walk of one dataset folder, with what it has read and reported so far.
pub(crate) struct Scan<'o> {
    /// The dataset folder as given, for messages.
    root: PathBuf,
    /// The dataset folder with every link resolved: whatever is read must lie below it.
    canonical_root: PathBuf,
    options: &'o LoadOptions,
    state: RefCell<ScanState>,
}

#[derive(Default)]
struct ScanState {
    /// The entries of each folder read so far, by its resolved path.
    listings: HashMap<PathBuf, Rc<[Entry]>>,
    /// Entries read from every folder together.
    scanned: usize,
    limit_reached: bool,
    /// The paths already reported, so that a folder listed twice reports its links once.
    reported: BTreeSet<PathBuf>,
    diagnostics: Vec<Diagnostic>,
}

/// A file or folder found in a listing, links already checked.
#[derive(Debug)]
struct Entry {
    name: OsString,
    is_dir: bool,
    /// Where it is with every link resolved.
    canonical: PathBuf,
    /// What the symbolic link says it points at; `None` for an entry that is not a link.
    link: Option<PathBuf>,
}

impl<'o> Scan<'o> {
    /// A walk of the dataset in `root`, bounded and cancelled as `options` say.
    pub fn new(root: &Path, options: &'o LoadOptions) -> Self {
        // A root that cannot be resolved cannot be listed either; comparing against it as
        // given then refuses every link, the safe side.
        let canonical_root = crate::files::canonical(root);
        Self {
            root: root.to_path_buf(),
            canonical_root,
            options,
            state: RefCell::new(ScanState::default()),
        }
    }

    /// Whether loading was cancelled: the walk then lists nothing more.
    pub fn cancelled(&self) -> bool {
        self.options.cancelled()
    }

    /// What the walk reported, in the order found.
    pub fn into_diagnostics(self) -> Vec<Diagnostic> {
        self.state.into_inner().diagnostics
    }

    /// The image files directly inside `dir`, sorted.
    pub fn images(&self, dir: &Path) -> Vec<PathBuf> {
        self.list(dir, |e| !e.is_dir && is_image_path(Path::new(&e.name)))
    }

    /// The files directly inside `dir`, sorted; hidden ones (`.DS_Store`, `._x.jpg`) skipped.
    pub fn files(&self, dir: &Path) -> Vec<PathBuf> {
        self.list(dir, |e| !e.is_dir)
    }

    /// The folders directly inside `dir`, sorted; hidden ones skipped.
    pub fn dirs(&self, dir: &Path) -> Vec<PathBuf> {
        self.list(dir, |e| e.is_dir)
    }

    /// Image files anywhere below `dir`, sorted.
    pub fn images_recursive(&self, dir: &Path) -> Vec<PathBuf> {
        self.walk(dir, |e| is_image_path(Path::new(&e.name)))
    }

    /// Files anywhere below `dir`, sorted.
    pub fn files_recursive(&self, dir: &Path) -> Vec<PathBuf> {
        self.walk(dir, |_| true)
    }

    /// Whether the resolved path `canonical` lies inside the dataset folder.
    pub fn holds(&self, canonical: &Path) -> bool {
        canonical.starts_with(&self.canonical_root)
    }

    /// Whether `path` names `canonical` without going through a symbolic link (compared below
    /// the dataset folder; a path outside it never does).
    pub fn is_direct(&self, path: &Path, canonical: &Path) -> bool {
        path.strip_prefix(&self.root)
            .is_ok_and(|relative| self.canonical_root.join(relative) == canonical)
    }

    /// Where `path` leads, when that is outside the dataset folder; `None` when it stays inside
    /// or does not exist (then there is nothing to read).
    pub fn outside(&self, path: &Path) -> Option<PathBuf> {
        std::fs::canonicalize(path)
            .ok()
            .filter(|canonical| !self.holds(canonical))
    }

    /// Whether `path` may be read: it does not lead outside the dataset folder. When it does,
    /// the symbolic link that takes it there is reported (once) and `false` returned.
    pub fn admit(&self, path: &Path) -> bool {
        match self.outside(path) {
            Some(canonical) => {
                self.report_outside(path, &canonical);
                false
            }
            None => true,
        }
    }

    /// The first of `candidates` that `exists` accepts and that lies inside the dataset.
    pub fn resolve(
        &self,
        candidates: impl IntoIterator<Item = PathBuf>,
        exists: fn(&Path) -> bool,
    ) -> Resolved {
        let mut outside = None;
        for candidate in candidates {
            if !exists(&candidate) {
                continue;
            }
            match self.outside(&candidate) {
                None => return Resolved::Inside(candidate),
                Some(target) => {
                    outside.get_or_insert(target);
                }
            }
        }
        outside.map_or(Resolved::Missing, Resolved::Outside)
    }

    /// The entries of `dir` that `keep` accepts, as paths below `dir`, sorted.
    fn list(&self, dir: &Path, keep: fn(&Entry) -> bool) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self
            .entries(dir)
            .iter()
            .filter(|e| keep(e))
            .map(|e| dir.join(&e.name))
            .collect();
        paths.sort();
        paths
    }

    /// The files below `dir` that `keep` accepts, sorted. A folder is entered once: a link to
    /// one already entered is reported and skipped. Links to folders are followed only once
    /// every folder reached without them is read, so that a folder is read under its own name
    /// rather than through a link to it.
    fn walk(&self, dir: &Path, keep: fn(&Entry) -> bool) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut entered = BTreeSet::new();
        if let Ok(canonical) = std::fs::canonicalize(dir) {
            entered.insert(canonical);
        }
        let mut to_read = vec![dir.to_path_buf()];
        // Links to folders met so far, as (the link, the entry it is in its folder's listing).
        let mut links: VecDeque<(PathBuf, Rc<[Entry]>, usize)> = VecDeque::new();
        loop {
            while let Some(folder) = to_read.pop() {
                let listing = self.entries(&folder);
                for (index, entry) in listing.iter().enumerate() {
                    let path = folder.join(&entry.name);
                    if !entry.is_dir {
                        if keep(entry) {
                            found.push(path);
                        }
                    } else if entry.link.is_some() {
                        links.push_back((path, listing.clone(), index));
                    } else if entered.insert(entry.canonical.clone()) {
                        to_read.push(path);
                    }
                }
            }
            let Some((path, listing, index)) = links.pop_front() else {
                break;
            };
            let link = &listing[index];
            if entered.insert(link.canonical.clone()) {
                to_read.push(path);
            } else if let Some(target) = &link.link {
                let message = format!(
                    "symbolic link leads to a folder already read (→ {})",
                    target.display()
                );
                self.report(&path, DiagnosticKind::Symlink, message);
            }
        }
        found.sort();
        found
    }

    /// The checked entries of `dir`, read once and remembered; none when it cannot be read,
    /// lies outside the dataset, or the walk has stopped.
    fn entries(&self, dir: &Path) -> Rc<[Entry]> {
        let nothing = || Rc::from(Vec::new());
        if self.cancelled() {
            return nothing();
        }
        let Ok(canonical) = std::fs::canonicalize(dir) else {
            return nothing();
        };
        if !self.holds(&canonical) {
            self.report_outside(dir, &canonical);
            return nothing();
        }
        if let Some(listing) = self.state.borrow().listings.get(&canonical) {
            return listing.clone();
        }
        let listing: Rc<[Entry]> = self.read_listing(dir, &canonical).into();
        self.state
            .borrow_mut()
            .listings
            .insert(canonical, listing.clone());
        listing
    }

    /// Reads `dir` (resolved: `canonical_dir`), counting every entry against the limit.
    fn read_listing(&self, dir: &Path, canonical_dir: &Path) -> Vec<Entry> {
        if self.state.borrow().limit_reached {
            return Vec::new();
        }
        let Ok(read) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut entries = Vec::new();
        for entry in read {
            if self.cancelled() || !self.count_one() {
                break;
            }
            if let Some(entry) = entry.ok().and_then(|e| self.check(dir, canonical_dir, &e)) {
                entries.push(entry);
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries
    }

    /// Counts one more entry read; `false` (and a diagnostic, the first time) once the limit
    /// is reached.
    fn count_one(&self) -> bool {
        let mut state = self.state.borrow_mut();
        if state.scanned < self.options.max_files_scanned {
            state.scanned += 1;
            return true;
        }
        if !state.limit_reached {
            state.limit_reached = true;
            state.diagnostics.push(Diagnostic::new(
                &self.root,
                DiagnosticKind::ScanLimit,
                format!(
                    "stopped after scanning {} files: is this the dataset folder?",
                    self.options.max_files_scanned
                ),
            ));
        }
        false
    }

    /// One entry of `dir` as the walk may use it: hidden entries and anything but files and
    /// folders are left out; a symbolic link is followed only when it stays inside the dataset
    /// and does not lead back to `dir` or a folder above it.
    fn check(&self, dir: &Path, canonical_dir: &Path, entry: &std::fs::DirEntry) -> Option<Entry> {
        let name = entry.file_name();
        if name.as_encoded_bytes().first() == Some(&b'.') {
            return None;
        }
        let file_type = entry.file_type().ok()?;
        if !file_type.is_symlink() {
            // Sockets and pipes hold no image, and reading a pipe would wait forever.
            let usable = file_type.is_dir() || file_type.is_file();
            return usable.then(|| Entry {
                canonical: canonical_dir.join(&name),
                is_dir: file_type.is_dir(),
                link: None,
                name,
            });
        }
        let path = dir.join(&name);
        let target = std::fs::read_link(&path).ok()?;
        // A link that leads nowhere is left out, as a missing file would be.
        let canonical = std::fs::canonicalize(&path).ok()?;
        if !self.holds(&canonical) {
            self.report_outside(&path, &canonical);
            return None;
        }
        let metadata = std::fs::metadata(&canonical).ok()?;
        if metadata.is_dir() && canonical_dir.starts_with(&canonical) {
            let message = format!("symbolic link makes a cycle (→ {})", target.display());
            self.report(&path, DiagnosticKind::Symlink, message);
            return None;
        }
        let usable = metadata.is_dir() || metadata.is_file();
        usable.then(|| Entry {
            is_dir: metadata.is_dir(),
            canonical,
            link: Some(target),
            name,
        })
    }

    /// Reports the symbolic link through which `path` leads to `canonical`, outside the
    /// dataset: the first link along `path` that does, or `path` itself when none is found.
    fn report_outside(&self, path: &Path, canonical: &Path) {
        // Only the part of `path` below the dataset folder is searched: the folders above it
        // may be links too (`/tmp` on some systems), and that is no concern of the dataset.
        let mut below_root: Vec<&Path> = path
            .ancestors()
            .take_while(|p| p.starts_with(&self.root) && *p != self.root)
            .collect();
        below_root.reverse();
        let link = below_root
            .into_iter()
            .filter(|p| p.is_symlink() && self.outside(p).is_some())
            .find_map(|p| Some((p, std::fs::read_link(p).ok()?)));
        match link {
            Some((link, target)) => self.report(
                link,
                DiagnosticKind::Symlink,
                format!(
                    "symbolic link leads outside the dataset (→ {})",
                    target.display()
                ),
            ),
            None => self.report(
                path,
                DiagnosticKind::OutsideDataset,
                format!("leads outside the dataset (→ {})", canonical.display()),
            ),
        }
    }

    /// Adds a diagnostic about `path`, unless one was already made about it.
    fn report(&self, path: &Path, kind: DiagnosticKind, message: String) {
        let mut state = self.state.borrow_mut();
        if state.reported.insert(path.to_path_buf()) {
            state.diagnostics.push(Diagnostic::new(path, kind, message));
        }
    }
}
