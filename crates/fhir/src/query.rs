//! The query part of a FHIR URL as conditional references, `ifNoneExist` and searches send
//! it: `key=value` pairs, escapes decoded.

/// The pairs of `query` (`a=1&b=2`), in the order sent, each side decoded.
pub(crate) fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decoded(k), percent_decoded(v))
        })
        .collect()
}

/// `system` and `value` when `params` is exactly `identifier=system|value`.
pub(crate) fn sole_identifier(params: &[(String, String)]) -> Option<(&str, &str)> {
    let [(key, token)] = params else { return None };
    token.split_once('|').filter(|(s, v)| key == "identifier" && !s.is_empty() && !v.is_empty())
}

/// `%XX` escapes decoded (a search parameter's `|` is often sent as `%7C`); anything that is not
/// a valid escape is kept as it is.
pub(crate) fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_decoded_and_anything_else_is_kept() {
        assert_eq!(
            percent_decoded("urn:oid:2.16.578.1.12.4.1.4.1%7C15918510033"),
            "urn:oid:2.16.578.1.12.4.1.4.1|15918510033"
        );
        assert_eq!(percent_decoded("100%"), "100%");
        assert_eq!(percent_decoded("%zz%7c"), "%zz|");
    }

    #[test]
    fn only_a_sole_identifier_with_system_and_value_is_one() {
        let params = query_params("identifier=urn:oid:1%7C42");
        assert_eq!(sole_identifier(&params), Some(("urn:oid:1", "42")));
        assert_eq!(sole_identifier(&query_params("identifier=|42")), None);
        assert_eq!(sole_identifier(&query_params("identifier=a|1&name=x")), None);
        assert_eq!(sole_identifier(&query_params("name=a|1")), None);
    }
}
