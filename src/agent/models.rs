//! Model → default configuration (reference §2.2, newest upstream table), as data.

use crate::tools::ToolVersion;

/// What a model defaults to when a session does not say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelDefaults {
    pub tool_version: ToolVersion,
    pub max_tokens: u32,
}

/// Model-name fragments, most specific first, with their defaults.
const TABLE: &[(&str, ToolVersion, u32)] = &[
    ("claude-opus-4-7", ToolVersion::V20251124, 16_384),
    ("claude-opus-4-6", ToolVersion::V20251124, 16_384),
    ("claude-sonnet-4-6", ToolVersion::V20251124, 16_384),
    ("claude-opus-4-5", ToolVersion::V20251124, 16_384),
    ("claude-haiku-4-5", ToolVersion::V20250429, 4_096),
    ("claude-sonnet-4-5", ToolVersion::V20250429, 16_384),
    ("claude-opus-4-1", ToolVersion::V20250429, 16_384),
    ("claude-opus-4", ToolVersion::V20250429, 16_384),
    ("claude-sonnet-4", ToolVersion::V20250429, 16_384),
    ("claude-3-7-sonnet", ToolVersion::V20250124, 16_384),
    ("claude-3-5-sonnet", ToolVersion::V20241022, 4_096),
];

/// Defaults for `model`; unknown models get the newest tool group.
pub fn defaults_for(model: &str) -> ModelDefaults {
    TABLE
        .iter()
        .find(|(fragment, _, _)| model.contains(fragment))
        .map(|&(_, tool_version, max_tokens)| ModelDefaults {
            tool_version,
            max_tokens,
        })
        .unwrap_or(ModelDefaults {
            tool_version: ToolVersion::V20251124,
            max_tokens: 16_384,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_models_map_to_their_groups() {
        assert_eq!(
            defaults_for("claude-opus-4-5-20251101").tool_version,
            ToolVersion::V20251124
        );
        assert_eq!(
            defaults_for("claude-sonnet-4-5-20250929").tool_version,
            ToolVersion::V20250429
        );
        assert_eq!(
            defaults_for("claude-3-5-sonnet-20241022").tool_version,
            ToolVersion::V20241022
        );
        assert_eq!(defaults_for("claude-haiku-4-5-20251001").max_tokens, 4_096);
    }
}
