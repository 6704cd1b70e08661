//! The Debian release a lab host runs: named in inventories (`lab: {os: debian-12}`), so it
//! belongs to the model; the lab crate builds the hosts.

use serde::Serialize;

/// The Debian release lab hosts run. Each has its own cached base image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub enum LabOs {
    /// Debian 12 (bookworm).
    Debian12,
    /// Debian 13 (trixie), the current stable release.
    #[default]
    Debian13,
}

impl LabOs {
    pub const ALL: [LabOs; 2] = [LabOs::Debian12, LabOs::Debian13];

    /// `debian-12`, `debian-13`: how the command line and inventories name it.
    pub fn name(self) -> &'static str {
        match self {
            LabOs::Debian12 => "debian-12",
            LabOs::Debian13 => "debian-13",
        }
    }

    /// The release's codename, as debootstrap wants it.
    pub fn suite(self) -> &'static str {
        match self {
            LabOs::Debian12 => "bookworm",
            LabOs::Debian13 => "trixie",
        }
    }

    pub fn parse(s: &str) -> Result<LabOs, String> {
        LabOs::ALL
            .into_iter()
            .find(|o| o.name() == s || o.suite() == s)
            .ok_or_else(|| {
                format!(
                    "unknown lab OS `{s}`; choose one of: {}",
                    LabOs::ALL.map(LabOs::name).join(", ")
                )
            })
    }
}

impl std::fmt::Display for LabOs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
