//! Tool versions ("tool groups", reference §2.1) as data: which tool types and beta flag each
//! group sends. We use the [REC] correct type pairs rather than Snapshot A's mislabelled ones.

use std::fmt;

/// A selectable tool group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ToolVersion {
    V20241022,
    V20250124,
    V20250429,
    V20251124,
}

/// The row of the group table.
struct Group {
    name: &'static str,
    computer_type: &'static str,
    edit_type: &'static str,
    edit_name: &'static str,
    bash_type: &'static str,
    beta: &'static str,
}

const GROUPS: [(ToolVersion, Group); 4] = [
    (
        ToolVersion::V20241022,
        Group {
            name: "computer_use_20241022",
            computer_type: "computer_20241022",
            edit_type: "text_editor_20241022",
            edit_name: "str_replace_editor",
            bash_type: "bash_20241022",
            beta: "computer-use-2024-10-22",
        },
    ),
    (
        ToolVersion::V20250124,
        Group {
            name: "computer_use_20250124",
            computer_type: "computer_20250124",
            edit_type: "text_editor_20250124",
            edit_name: "str_replace_editor",
            bash_type: "bash_20250124",
            beta: "computer-use-2025-01-24",
        },
    ),
    (
        ToolVersion::V20250429,
        Group {
            name: "computer_use_20250429",
            computer_type: "computer_20250124",
            edit_type: "text_editor_20250429",
            edit_name: "str_replace_based_edit_tool",
            bash_type: "bash_20250124",
            beta: "computer-use-2025-01-24",
        },
    ),
    (
        ToolVersion::V20251124,
        Group {
            name: "computer_use_20251124",
            computer_type: "computer_20251124",
            edit_type: "text_editor_20250728",
            edit_name: "str_replace_based_edit_tool",
            bash_type: "bash_20250124",
            beta: "computer-use-2025-11-24",
        },
    ),
];

impl ToolVersion {
    /// Every version, oldest first.
    pub const ALL: [ToolVersion; 4] = [
        ToolVersion::V20241022,
        ToolVersion::V20250124,
        ToolVersion::V20250429,
        ToolVersion::V20251124,
    ];

    fn group(self) -> &'static Group {
        &GROUPS
            .iter()
            .find(|(v, _)| *v == self)
            .expect("every version has a group")
            .1
    }

    /// Parses `computer_use_YYYYMMDD`.
    pub fn parse(name: &str) -> Option<ToolVersion> {
        GROUPS.iter().find(|(_, g)| g.name == name).map(|(v, _)| *v)
    }

    /// `computer_use_YYYYMMDD`.
    pub fn as_str(self) -> &'static str {
        self.group().name
    }
    pub fn computer_type(self) -> &'static str {
        self.group().computer_type
    }
    pub fn edit_type(self) -> &'static str {
        self.group().edit_type
    }
    pub fn edit_name(self) -> &'static str {
        self.group().edit_name
    }
    pub fn bash_type(self) -> &'static str {
        self.group().bash_type
    }
    /// The group's `anthropic-beta` flag.
    pub fn beta_flag(self) -> &'static str {
        self.group().beta
    }
    /// Whether the editor has `undo_edit` (the `str_replace_editor` generations).
    pub fn edit_has_undo(self) -> bool {
        self.edit_name() == "str_replace_editor"
    }
    /// Whether `insert` takes `insert_text` (text_editor_20250728) rather than `new_str`.
    pub fn edit_uses_insert_text(self) -> bool {
        self.edit_type() == "text_editor_20250728"
    }
}

impl fmt::Display for ToolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_groups_match_the_reference() {
        for version in ToolVersion::ALL {
            assert_eq!(ToolVersion::parse(version.as_str()), Some(version));
        }
        assert_eq!(ToolVersion::parse("computer_use_2099"), None);
        let latest = ToolVersion::V20251124;
        assert_eq!(
            (
                latest.computer_type(),
                latest.edit_type(),
                latest.beta_flag()
            ),
            (
                "computer_20251124",
                "text_editor_20250728",
                "computer-use-2025-11-24"
            )
        );
        assert!(ToolVersion::V20250124.edit_has_undo() && !latest.edit_has_undo());
        assert!(latest.edit_uses_insert_text() && !ToolVersion::V20250429.edit_uses_insert_text());
    }
}
