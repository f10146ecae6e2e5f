//! Validation of the fields a session is created with (`POST /api/sessions`).

use serde_json::{Map, Value, json};

use super::{Result, SessionError};
use crate::agent::models;
use crate::store::NewSession;
use crate::tools::ToolVersion;

/// The fields `POST /api/sessions` accepts; every one optional.
pub const FIELDS: &[&str] = &[
    "model",
    "provider",
    "system_prompt_suffix",
    "tool_version",
    "max_tokens",
    "thinking_budget",
    "only_n_most_recent_images",
    "title",
];

/// Validated session settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionParams {
    pub title: Option<String>,
    pub model: String,
    pub provider: String,
    pub system_prompt_suffix: String,
    pub tool_version: ToolVersion,
    pub max_tokens: u32,
    pub thinking_budget: Option<u32>,
    pub only_n_most_recent_images: Option<u32>,
}

fn invalid(field: &str, detail: impl Into<String>) -> SessionError {
    SessionError::Invalid {
        field: field.to_string(),
        detail: detail.into(),
    }
}

fn string(body: &Map<String, Value>, field: &str, max_len: usize) -> Result<Option<String>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max_len => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(invalid(
            field,
            format!("must be at most {max_len} characters"),
        )),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

fn integer(body: &Map<String, Value>, field: &str, min: u64, max: u64) -> Result<Option<u32>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n as u32)),
            _ => Err(invalid(
                field,
                format!("must be an integer from {min} to {max}"),
            )),
        },
    }
}

impl SessionParams {
    /// Validates a create-session body (a JSON object) against the defaults.
    pub fn from_json(body: &Value, default_model: &str) -> Result<SessionParams> {
        let Some(body) = body.as_object() else {
            return Err(invalid("body", "must be a JSON object"));
        };
        if let Some(unknown) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(invalid(
                unknown,
                format!("unknown field; accepted fields: {}", FIELDS.join(", ")),
            ));
        }
        let model = string(body, "model", 200)?.filter(|m| !m.trim().is_empty());
        let model = model.unwrap_or_else(|| default_model.to_string());
        let provider = string(body, "provider", 20)?.unwrap_or_else(|| "anthropic".into());
        if provider != "anthropic" {
            return Err(invalid(
                "provider",
                format!(
                    "unsupported provider {provider:?}; this server speaks to the first-party API (\"anthropic\")"
                ),
            ));
        }
        let defaults = models::defaults_for(&model);
        let tool_version = match string(body, "tool_version", 40)? {
            None => defaults.tool_version,
            Some(name) => ToolVersion::parse(&name).ok_or_else(|| {
                let names: Vec<&str> = ToolVersion::ALL.iter().map(|v| v.as_str()).collect();
                invalid(
                    "tool_version",
                    format!("unknown tool version {name:?}; one of {}", names.join(", ")),
                )
            })?,
        };
        let max_tokens = integer(body, "max_tokens", 1, 128_000)?.unwrap_or(defaults.max_tokens);
        let thinking_budget = integer(body, "thinking_budget", 1024, 128_000)?;
        if let Some(budget) = thinking_budget.filter(|b| *b >= max_tokens) {
            return Err(invalid(
                "thinking_budget",
                format!("{budget} must be less than max_tokens ({max_tokens})"),
            ));
        }
        Ok(SessionParams {
            title: string(body, "title", 200)?,
            model,
            provider,
            system_prompt_suffix: string(body, "system_prompt_suffix", 20_000)?.unwrap_or_default(),
            tool_version,
            max_tokens,
            thinking_budget,
            only_n_most_recent_images: integer(body, "only_n_most_recent_images", 0, 1000)?,
        })
    }

    /// Reads the settings back from a stored session (for the worker).
    pub fn from_record(record: &crate::store::SessionRecord) -> SessionParams {
        let get = |key: &str| {
            record
                .settings
                .get(key)
                .and_then(Value::as_u64)
                .map(|n| n as u32)
        };
        let defaults = models::defaults_for(&record.model);
        SessionParams {
            title: record.title.clone(),
            model: record.model.clone(),
            provider: record.provider.clone(),
            system_prompt_suffix: record.system_prompt_suffix.clone(),
            tool_version: ToolVersion::parse(&record.tool_version).unwrap_or(defaults.tool_version),
            max_tokens: get("max_tokens").unwrap_or(defaults.max_tokens),
            thinking_budget: get("thinking_budget"),
            only_n_most_recent_images: get("only_n_most_recent_images"),
        }
    }

    /// The row to insert.
    pub fn to_new_session(&self, id: &str) -> NewSession {
        NewSession {
            id: id.to_string(),
            title: self.title.clone(),
            model: self.model.clone(),
            provider: self.provider.clone(),
            system_prompt_suffix: self.system_prompt_suffix.clone(),
            tool_version: self.tool_version.as_str().to_string(),
            settings: json!({
                "max_tokens": self.max_tokens,
                "thinking_budget": self.thinking_budget,
                "only_n_most_recent_images": self.only_n_most_recent_images,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_body_takes_model_defaults() {
        let params = SessionParams::from_json(&json!({}), "claude-sonnet-4-5-20250929").unwrap();
        assert_eq!(params.model, "claude-sonnet-4-5-20250929");
        assert_eq!(params.provider, "anthropic");
        assert_eq!(params.thinking_budget, None);
    }

    #[test]
    fn invalid_fields_are_named() {
        let cases = [
            (json!({"max_tokens": "many"}), "max_tokens"),
            (json!({"tool_version": "computer_use_1999"}), "tool_version"),
            (json!({"provider": "bedrock"}), "provider"),
            (
                json!({"thinking_budget": 9000, "max_tokens": 4096}),
                "thinking_budget",
            ),
            (json!({"colour": "blue"}), "colour"),
            (json!({"title": 5}), "title"),
        ];
        for (body, field) in cases {
            match SessionParams::from_json(&body, "m") {
                Err(SessionError::Invalid { field: f, .. }) => assert_eq!(f, field, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
