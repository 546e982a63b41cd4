//! Writing an experiment in another engine's format: one file per format.
//! `chaos_mesh` writes Kubernetes manifests for Chaos Mesh.

pub mod chaos_mesh;

/// A part of the experiment the target format cannot express, and why. It is
/// printed on stderr and written into the output; it is never left out silently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// Where in the experiment, e.g. `method[2] (fill the disk): disk_fill`.
    pub what: String,
    pub why: String,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.why)
    }
}
