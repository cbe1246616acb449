//! Duplicate-member detection: a JSON text in which an object names a member twice has no one
//! meaning (readers differ in which of the two they take), so a token holding one is refused.

use std::fmt;

use crate::AuthError;

/// Refuses a JSON text in which an object, at any depth, names a member twice; anything that
/// is not JSON at all is `Malformed` (jsonwebtoken would refuse it the same way).
pub(super) fn check_unique_names(json: &[u8]) -> Result<(), AuthError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let found: UniqueNames = serde::Deserialize::deserialize(&mut de).map_err(|_| AuthError::Malformed)?;
    de.end().map_err(|_| AuthError::Malformed)?;
    match found.0 {
        Some(name) => Err(AuthError::DuplicateClaim(name)),
        None => Ok(()),
    }
}

/// Longest member name quoted back in [`AuthError::DuplicateClaim`].
const NAME_ECHO: usize = 64;

/// Any JSON value, read only for the first member name that an object in it gives twice. The
/// whole text is still read (serde_json checks its syntax to the end), so this is not an error
/// that would stop the reading half-way.
struct UniqueNames(Option<String>);

impl<'de> serde::Deserialize<'de> for UniqueNames {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueNamesVisitor)
    }
}

struct UniqueNamesVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueNamesVisitor {
    type Value = UniqueNames;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<UniqueNames, E> {
        Ok(UniqueNames(None))
    }
    fn visit_i64<E>(self, _: i64) -> Result<UniqueNames, E> {
        Ok(UniqueNames(None))
    }
    fn visit_u64<E>(self, _: u64) -> Result<UniqueNames, E> {
        Ok(UniqueNames(None))
    }
    fn visit_f64<E>(self, _: f64) -> Result<UniqueNames, E> {
        Ok(UniqueNames(None))
    }
    fn visit_str<E>(self, _: &str) -> Result<UniqueNames, E> {
        Ok(UniqueNames(None))
    }
    fn visit_unit<E>(self) -> Result<UniqueNames, E> {
        Ok(UniqueNames(None))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueNames, A::Error> {
        let mut first = None;
        while let Some(UniqueNames(found)) = seq.next_element()? {
            first = first.or(found);
        }
        Ok(UniqueNames(first))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueNames, A::Error> {
        let mut seen = std::collections::HashSet::new();
        let mut first = None;
        while let Some(name) = map.next_key::<String>()? {
            let UniqueNames(inner) = map.next_value()?;
            if first.is_some() {
                continue; // read on to the end of the text, which must still be JSON
            }
            if seen.contains(&name) {
                first = Some(name.chars().take(NAME_ECHO).collect());
            } else {
                first = inner;
                seen.insert(name);
            }
        }
        Ok(UniqueNames(first))
    }
}
