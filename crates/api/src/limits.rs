//! Request limits checked before any work is done, in time linear in the document: each
//! fragment's cost is computed once and reused wherever it is spread, so a document that would
//! expand exponentially (fragments spreading fragments twice) is measured, not expanded.

use std::collections::HashMap;

use async_graphql::parser::types::{ExecutableDocument, FragmentDefinition, Selection, SelectionSet};
use async_graphql::{Name, Request, Value};

/// Characters of query text accepted.
pub const MAX_QUERY_CHARS: usize = 64 * 1024;
/// Deepest selection nesting.
pub const MAX_DEPTH: usize = 15;
/// Most fields a request may select once fragments are expanded.
pub const MAX_FIELDS: u64 = 20_000;
/// Most root fields (aliases included) in one operation.
pub const MAX_ROOT_FIELDS: u64 = 50;
/// Most list items a request may ask for: the sum of every `first` it would execute.
pub const MAX_LIST_ITEMS: u64 = 10_000;
/// `first` assumed for a list field that does not give it (the schema's default).
const DEFAULT_FIRST: u64 = 100;

#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    fields: u64,
    depth: usize,
    items: u64,
    /// Fields at the top of the set, fragments expanded: an operation's root fields.
    roots: u64,
}

struct Walker<'a> {
    fragments: &'a HashMap<Name, async_graphql::Positioned<FragmentDefinition>>,
    variables: &'a async_graphql::Variables,
    memo: HashMap<Name, Cost>,
    visiting: Vec<Name>,
}

impl Walker<'_> {
    fn first_arg(&self, value: &async_graphql::parser::types::Field) -> Option<u64> {
        let (_, v) = value.arguments.iter().find(|(n, _)| n.node.as_str() == "first")?;
        let v = v.node.clone().into_const_with(|name| self.variables.get(&name).cloned().ok_or(())).ok()?;
        match v {
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    fn set(&mut self, set: &SelectionSet) -> Result<Cost, String> {
        let mut total = Cost::default();
        for sel in &set.items {
            let c = match &sel.node {
                Selection::Field(f) => {
                    let inner = self.set(&f.node.selection_set.node)?;
                    let items = if matches!(f.node.name.node.as_str(), "events" | "accessLog" | "myAccessLog") {
                        self.first_arg(&f.node).unwrap_or(DEFAULT_FIRST)
                    } else {
                        0
                    };
                    Cost { fields: 1 + inner.fields, depth: 1 + inner.depth, items: items + inner.items, roots: 1 }
                }
                Selection::FragmentSpread(s) => self.fragment(&s.node.fragment_name.node)?,
                Selection::InlineFragment(f) => self.set(&f.node.selection_set.node)?,
            };
            total.fields = total.fields.saturating_add(c.fields);
            total.roots = total.roots.saturating_add(c.roots);
            total.items = total.items.saturating_add(c.items);
            total.depth = total.depth.max(c.depth);
            if total.fields > MAX_FIELDS {
                return Err(format!("the request selects more than {MAX_FIELDS} fields"));
            }
        }
        Ok(total)
    }

    fn fragment(&mut self, name: &Name) -> Result<Cost, String> {
        if let Some(c) = self.memo.get(name) {
            return Ok(*c);
        }
        if self.visiting.contains(name) {
            return Err("fragments must not spread themselves".into());
        }
        let Some(def) = self.fragments.get(name) else {
            return Ok(Cost::default()); // validation reports the unknown fragment
        };
        self.visiting.push(name.clone());
        let c = self.set(&def.node.selection_set.node)?;
        self.visiting.pop();
        self.memo.insert(name.clone(), c);
        Ok(c)
    }
}

/// The same limits as a schema extension, so they hold for every transport (WebSocket
/// subscriptions too), checked right after parsing and before validation.
/// It also hands the schema's type registry to the document cache, which checks variables with
/// it (see [`check`]).
#[derive(Debug, Default)]
pub struct Limits {
    pub(crate) documents: Option<std::sync::Arc<DocumentCache>>,
}

impl async_graphql::extensions::ExtensionFactory for Limits {
    fn create(&self) -> std::sync::Arc<dyn async_graphql::extensions::Extension> {
        std::sync::Arc::new(Limits { documents: self.documents.clone() })
    }
}

fn limit_error(message: String) -> async_graphql::ServerError {
    let mut e = async_graphql::ServerError::new(message, None);
    let mut ext = async_graphql::ErrorExtensionValues::default();
    ext.set("code", forlop_engine::code::INVALID_INPUT);
    e.extensions = Some(ext);
    e
}

#[async_trait::async_trait]
impl async_graphql::extensions::Extension for Limits {
    async fn parse_query(
        &self,
        ctx: &async_graphql::extensions::ExtensionContext<'_>,
        query: &str,
        variables: &async_graphql::Variables,
        next: async_graphql::extensions::NextParseQuery<'_>,
    ) -> async_graphql::ServerResult<ExecutableDocument> {
        if query.len() > MAX_QUERY_CHARS {
            return Err(limit_error(format!("the query exceeds {MAX_QUERY_CHARS} characters")));
        }
        if let Some(documents) = &self.documents {
            documents.schema.get_or_init(|| ctx.schema_env.clone());
        }
        let doc = next.run(ctx, query, variables).await.map_err(coded)?;
        check_document(&doc, variables).map_err(limit_error)?;
        Ok(doc)
    }

    async fn validation(
        &self,
        ctx: &async_graphql::extensions::ExtensionContext<'_>,
        next: async_graphql::extensions::NextValidation<'_>,
    ) -> Result<async_graphql::ValidationResult, Vec<async_graphql::ServerError>> {
        next.run(ctx).await.map_err(|errors| errors.into_iter().map(coded).collect())
    }
}

/// Parse and validation errors are bad input: they get the code over every transport, and
/// their messages echo at most `forlop_domain::text::QUOTE_LIMIT` characters of what the client sent.
fn coded(mut e: async_graphql::ServerError) -> async_graphql::ServerError {
    let ext = e.extensions.get_or_insert_with(Default::default);
    if ext.get("code").is_none() {
        ext.set("code", forlop_engine::code::INVALID_INPUT);
    }
    e.message = forlop_domain::text::clip(&e.message);
    e
}

/// Parsed documents by query text. Dashboards and integrations send the same few queries again
/// and again, and parsing and validating are a large share of a small query's cost; a clone of a
/// parsed document is much cheaper. Bounded: when full it starts again empty.
///
/// A document that once passed full validation is marked, and its later requests need only their
/// variables checked: every other rule judges the document alone.
#[derive(Default)]
pub struct DocumentCache {
    docs: parking_lot::Mutex<HashMap<String, CachedDocument>>,
    /// The strict schema's environment (its type registry), from its first request.
    schema: std::sync::OnceLock<async_graphql::SchemaEnv>,
}

impl std::fmt::Debug for DocumentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentCache").field("documents", &self.docs.lock().len()).finish()
    }
}

struct CachedDocument {
    doc: ExecutableDocument,
    /// Passed full validation once (with some variables).
    validated: bool,
}

/// Queries kept parsed.
const CACHED_DOCUMENTS: usize = 256;

impl DocumentCache {
    fn get(&self, query: &str) -> Option<(ExecutableDocument, bool)> {
        self.docs.lock().get(query).map(|c| (c.doc.clone(), c.validated))
    }

    fn put(&self, query: &str, doc: &ExecutableDocument) {
        let mut docs = self.docs.lock();
        if docs.len() >= CACHED_DOCUMENTS {
            docs.clear();
        }
        docs.insert(query.to_owned(), CachedDocument { doc: doc.clone(), validated: false });
    }

    /// Records that `query` passed full validation.
    pub(crate) fn validated(&self, query: &str) {
        if let Some(c) = self.docs.lock().get_mut(query) {
            c.validated = true;
        }
    }
}

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct Checked {
    /// The name of the operation that will run, for the access log.
    pub operation: Option<String>,
    /// The document passed full validation before and these variables fit its declarations, so
    /// the fast schema may run it.
    pub validated: bool,
}

/// Refuses a request that is too large, too deep, too wide or asks for too many list items.
/// Parses the query once (or takes it from `cache`) and leaves the document in the request, so
/// the schema does not parse it again. Unparsable documents pass: the schema reports parse errors
/// itself.
pub fn check(request: &mut Request, cache: &DocumentCache) -> Result<Checked, String> {
    if request.query.len() > MAX_QUERY_CHARS {
        return Err(format!("the query exceeds {MAX_QUERY_CHARS} characters"));
    }
    let cached = cache.get(&request.query);
    let fresh = cached.is_none();
    let mut validated = false;
    if let Some((doc, was_validated)) = cached {
        request.set_parsed_query(doc);
        validated = was_validated;
    }
    let variables = std::mem::take(&mut request.variables);
    let named = request.operation_name.clone();
    let query = if fresh { Some(request.query.clone()) } else { None };
    let Ok(doc) = request.parsed_query() else {
        request.variables = variables;
        return Ok(Checked::default());
    };
    // Limits depend on the variables (`first: $n`), so they are checked on every request.
    let limits = check_document(doc, &variables);
    validated = validated
        && limits.is_ok()
        && cache.schema.get().is_some_and(|env| variables_fit(&env.registry, doc, named.as_deref(), &variables));
    if let Some(query) = query {
        cache.put(&query, doc);
    }
    let operation = match named {
        Some(name) => Some(name),
        None => doc.operations.iter().next().and_then(|(name, _)| name.map(|n| n.to_string())),
    };
    request.variables = variables;
    limits?;
    Ok(Checked { operation, validated })
}

/// Whether every variable the chosen operation declares has a value that full validation would
/// accept. Only scalar and enum types (and lists of them) are judged here; a variable of an input
/// object type, a missing operation or anything unclear gives false, and the request is then
/// validated in full, which words the error.
fn variables_fit(
    registry: &async_graphql::registry::Registry,
    doc: &ExecutableDocument,
    operation: Option<&str>,
    variables: &async_graphql::Variables,
) -> bool {
    use async_graphql::parser::types::DocumentOperations;
    let op = match (&doc.operations, operation) {
        (DocumentOperations::Single(op), None) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => match ops.get(name) {
            Some(op) => op,
            None => return false,
        },
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => match ops.values().next() {
            Some(op) => op,
            None => return false,
        },
        _ => return false,
    };
    op.node.variable_definitions.iter().all(|def| {
        let def = &def.node;
        let value = variables.get(&def.name.node).or(def.default_value.as_ref().map(|d| &d.node));
        value_fits(registry, &def.var_type.node, value)
    })
}

fn value_fits(
    registry: &async_graphql::registry::Registry,
    ty: &async_graphql::parser::types::Type,
    value: Option<&Value>,
) -> bool {
    use async_graphql::parser::types::BaseType;
    use async_graphql::registry::MetaType;
    let value = match value {
        None | Some(Value::Null) => return ty.nullable,
        Some(v) => v,
    };
    match &ty.base {
        BaseType::List(inner) => match value {
            Value::List(items) => items.iter().all(|item| value_fits(registry, inner, Some(item))),
            single => value_fits(registry, inner, Some(single)),
        },
        BaseType::Named(name) => match registry.types.get(name.as_str()) {
            Some(MetaType::Scalar { is_valid, .. }) => is_valid.as_ref().is_none_or(|valid| valid(value)),
            Some(MetaType::Enum { enum_values, .. }) => match value {
                Value::Enum(v) => enum_values.contains_key(v.as_str()),
                Value::String(v) => enum_values.contains_key(v.as_str()),
                _ => false,
            },
            _ => false,
        },
    }
}

fn check_document(doc: &ExecutableDocument, variables: &async_graphql::Variables) -> Result<(), String> {
    let mut w = Walker { fragments: &doc.fragments, variables, memo: HashMap::new(), visiting: Vec::new() };
    for (_, op) in doc.operations.iter() {
        let c = w.set(&op.node.selection_set.node)?;
        if c.roots > MAX_ROOT_FIELDS {
            return Err(format!("an operation may select at most {MAX_ROOT_FIELDS} root fields (aliases included)"));
        }
        if c.depth > MAX_DEPTH {
            return Err(format!("the query is nested deeper than {MAX_DEPTH}"));
        }
        if c.items > MAX_LIST_ITEMS {
            return Err(format!("the request asks for more than {MAX_LIST_ITEMS} list items in all"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_q(q: &str) -> Result<(), String> {
        check(&mut Request::new(q), &DocumentCache::default()).map(|_| ())
    }

    #[test]
    fn exponential_fragments_are_measured_not_expanded() {
        let mut q = String::from("{ ...F0 } ");
        for i in 0..40 {
            q.push_str(&format!("fragment F{i} on Query {{ log {{ committed }} ...F{} ...F{} }} ", i + 1, i + 1));
        }
        q.push_str("fragment F40 on Query { log { committed } }");
        let started = std::time::Instant::now();
        let err = check_q(&q).unwrap_err();
        assert!(err.contains("fields"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
    }

    #[test]
    fn limits() {
        assert!(check_q("{ log { committed } }").is_ok());
        let aliases: String = (0..51).map(|i| format!("a{i}: log {{ committed }} ")).collect();
        assert!(check_q(&format!("{{ {aliases} }}")).unwrap_err().contains("root fields"));
        let items: String = (0..11).map(|i| format!("e{i}: events(first: 1000) {{ nodes {{ id }} }} ")).collect();
        assert!(check_q(&format!("{{ {items} }}")).unwrap_err().contains("list items"));
        let opening = "patient(id: \"x\") { continuity { segments { ".repeat(6);
        let deep = format!("{{ {opening} sessions {} }}", "}}}".repeat(6));
        assert!(check_q(&deep).unwrap_err().contains("deeper"));
        assert!(check_q("fragment A on Query { ...A } { ...A }").unwrap_err().contains("themselves"));
    }
}
