//! The OpenAPI schemas of the two value types every contract and route shares, an [`Id`] and an
//! [`Email`]: built from the pattern constants beside their validators
//! ([`crate::validation::ID_PATTERN`], [`crate::validation::EMAIL_PATTERN`]), so that a rule
//! has one home. Fields and parameters name them with `value_type = Id` (or `Email`); the values
//! themselves stay `String`s, checked by [`crate::validation::is_id`] and
//! [`crate::validation::is_email`]. Only with the `openapi` feature, as every utoipa use of the
//! crate.

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::validation::{EMAIL_PATTERN, ID_PATTERN, MAX_EMAIL, MAX_ID_LEN};

/// An id: letters, digits, `. _ : -`, at least one letter or digit; at most 128 characters.
/// Only a schema (no value has this type).
pub enum Id {}

/// An e-mail address: `local@domain.tld`, at most 64 of letters, digits and `. _ % + -` before
/// the @ (no leading, trailing or double dot), dotted labels of letters, digits and `-` after
/// it. Only a schema (no value has this type).
pub enum Email {}

/// The schema of an id of at most `max_length` characters (an [`Id`] with a tighter bound),
/// described by `description`.
pub fn id(max_length: usize, description: &str) -> RefOr<Schema> {
    string(ID_PATTERN, max_length, description)
}

/// The schema of an id of at most `max_length` characters that does not start with `prefix`
/// (letters, digits and `-` only: it is not escaped), described by `description`.
pub fn id_not_starting_with(prefix: &str, max_length: usize, description: &str) -> RefOr<Schema> {
    let rest = ID_PATTERN.strip_prefix('^').unwrap_or(ID_PATTERN);
    string(&format!("^(?!{prefix}){rest}"), max_length, description)
}

fn string(pattern: &str, max_length: usize, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .max_length(Some(max_length))
        .description(Some(description))
        .into()
}

impl PartialSchema for Id {
    fn schema() -> RefOr<Schema> {
        id(
            MAX_ID_LEN,
            "An id: letters, digits, `. _ : -`, at least one letter or digit.",
        )
    }
}

impl ToSchema for Id {}

impl PartialSchema for Email {
    fn schema() -> RefOr<Schema> {
        string(
            EMAIL_PATTERN,
            MAX_EMAIL,
            "An e-mail address: `local@domain.tld`, at most 64 of letters, digits and `. _ % + -` \
             before the @ (no leading, trailing or double dot), dotted labels of letters, digits \
             and `-` after it.",
        )
    }
}

impl ToSchema for Email {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_not_starting_with_a_prefix_keeps_the_id_pattern_after_a_lookahead() {
        let schema = serde_json::to_value(id_not_starting_with("order-", 9, "d")).unwrap();
        assert_eq!(
            schema["pattern"],
            format!("^(?!order-){}", &ID_PATTERN[1..])
        );
        assert_eq!(
            (schema["maxLength"].as_u64(), schema["description"].as_str()),
            (Some(9), Some("d"))
        );
    }
}
