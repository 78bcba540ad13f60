//! FHIRPath (normative release N1, as FHIR R4 uses it) over FHIR JSON.
//!
//! An [`Expression`] is compiled once and evaluated many times, from any thread. Evaluation
//! borrows the resource: the [`Item`]s it returns are either nodes of the JSON (with their FHIR
//! type, taken from the R4 definitions in the `fhir` crate) or System values it computed.
//!
//! ```
//! let patient = serde_json::json!({"resourceType": "Patient", "name": [{"use": "official", "family": "Chalmers"}]});
//! let expr = fhirpath::Expression::compile("Patient.name.where(use = 'official').family").unwrap();
//! let items = expr.evaluate(&patient).unwrap();
//! assert_eq!(items[0].fhir_type(), "string");
//! assert_eq!(items[0].json().as_str(), Some("Chalmers"));
//! ```
//!
//! Errors never quote the data evaluated (only names taken from the expression), so they may
//! be logged; `trace()` writes to a caller-supplied [`TraceSink`] only.
//!
//! ## Semantics worth knowing
//!
//! - **Types** come from the R4 StructureDefinitions: `Observation.value` yields the node under
//!   whichever `value[x]` is present, typed (`Quantity`, `CodeableConcept`...); `valueQuantity`
//!   is not a FHIRPath name and is an error. A primitive is one node made of its value and its
//!   `_name` sibling (id, extensions); a primitive with only `_name` is a node without value.
//! - **Unknown names**: navigating a name that is an element of none of the focus items' types
//!   is an [`EvalError::UnknownElement`] (a misspelt path); mixed collections (`descendants()`)
//!   skip items that lack it. JSON whose type is unknown is navigated by member name.
//! - **`x as T`** (the operator) filters a collection like `ofType(T)`, because the R4 search
//!   parameters apply it to collections (`Observation.component.value as Quantity`); the
//!   function `as(T)` keeps N1's single-item rule. [`Environment::strict`] restores the rule
//!   for both and refuses ordered functions after `children()`/`descendants()`.
//! - **`resolve()`** finds `#id` among the contained resources of `%rootResource`/`%resource`,
//!   and other references by `fullUrl` or `type/id` in the Bundle (the resource itself when it
//!   is one, or [`Environment::with_bundle`]). A reference not found whose text names a resource
//!   type (`Patient/123`) yields a node of that type without content, so that
//!   `subject.where(resolve() is Patient)` works without a database.
//! - **Quantities** compare across UCUM units the engine knows (metric prefixes on `g m s L mol
//!   Pa m[Hg]`, `[lb_av] [in_i] [ft_i] %`, `min h d wk mo a`) and FHIRPath calendar durations;
//!   `1 year = 1 'a'` is empty (unknown) while `1 year ~ 1 'a'` is true.
//! - **Partly supported**: `memberOf()` knows the value sets of R4's required bindings that
//!   the `fhir` crate embeds and expands (others are an error); `conformsTo()` knows the core
//!   type URLs (others are an error); `htmlChecks()` is always true.

mod eval;
mod functions;
mod item;
mod model;
mod ops;
mod parser;
pub mod value;

pub use item::Item;
pub use value::Value;

use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::Arc;

/// Why an expression does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    /// The text is not FHIRPath.
    #[error("FHIRPath syntax error: {0}")]
    Syntax(String),
    /// Nesting deeper than the parser accepts.
    #[error("FHIRPath expression nested too deeply")]
    TooDeep,
    /// A function name FHIRPath does not define.
    #[error("unknown FHIRPath function {0}()")]
    UnknownFunction(String),
    /// A function called with a number of arguments it does not take.
    #[error("wrong number of arguments to {0}()")]
    Arity(String),
    /// A path that cannot hold for the types involved (`(value as Period).unit`).
    #[error("FHIRPath semantic error: {0}")]
    Semantic(String),
}

/// Why an evaluation failed. The texts carry names from the expression, never data values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// An operator or function met a type it cannot take.
    #[error("type error: {0}")]
    Type(String),
    /// A collection of several items where at most one is allowed.
    #[error("{0} expects a single item but got a collection")]
    NotSingleton(String),
    /// A name that is not an element of the type it is applied to.
    #[error("{element} is not an element of {type_name}")]
    UnknownElement {
        /// The type navigated from.
        type_name: String,
        /// The name asked for.
        element: String,
    },
    /// `%name` not defined by FHIRPath, FHIR or the environment.
    #[error("undefined variable %{0}")]
    UnknownVariable(String),
    /// A type name FHIRPath and R4 do not define.
    #[error("unknown type {0}")]
    UnknownType(String),
    /// A regular expression given to `matches()`/`replaceMatches()` that does not compile.
    #[error("invalid regular expression")]
    Regex,
    /// A function or argument this engine does not support (`memberOf` of a value set it does
    /// not know, `conformsTo` a profile...).
    #[error("{0}() is not supported")]
    Unsupported(String),
    /// An argument outside the function's domain.
    #[error("invalid argument to {0}()")]
    Argument(String),
}

/// A compiled FHIRPath expression: cheap to clone, `Send + Sync`, evaluated any number of times.
#[derive(Debug, Clone)]
pub struct Expression {
    root: Arc<parser::Expr>,
    source: Arc<str>,
}

impl Expression {
    /// Parses `source`.
    pub fn compile(source: &str) -> Result<Expression, CompileError> {
        let root = parser::parse(source)?;
        parser::check(&root)?;
        Ok(Expression { root: Arc::new(root), source: source.into() })
    }

    /// The text the expression was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates against a resource (which is `%resource`, `%context` and `%rootResource`).
    pub fn evaluate<'a>(&self, resource: &'a Json) -> Result<Vec<Item<'a>>, EvalError> {
        self.evaluate_with(&Environment::new(resource))
    }

    /// Evaluates in an [`Environment`]: variables, a context node, a Bundle for `resolve()`.
    pub fn evaluate_with<'a>(&self, env: &Environment<'a>) -> Result<Vec<Item<'a>>, EvalError> {
        eval::Evaluator::new(env).run(&self.root)
    }
}

/// Receives `trace()` output. Implement it to log, test or ignore; the items may hold PHI.
pub trait TraceSink: Sync {
    /// Called with the trace's name and the traced items.
    fn trace(&self, name: &str, items: &[Item<'_>]);
}

/// What an expression is evaluated against.
#[derive(Clone, Default)]
pub struct Environment<'a> {
    pub(crate) resource: Option<Item<'a>>,
    pub(crate) root_resource: Option<Item<'a>>,
    pub(crate) context: Option<Item<'a>>,
    pub(crate) variables: HashMap<String, Vec<Item<'a>>>,
    pub(crate) bundle: Option<&'a Json>,
    pub(crate) trace: Option<&'a dyn TraceSink>,
    pub(crate) now: Option<value::DateTime>,
    pub(crate) strict: bool,
}

impl std::fmt::Debug for Environment<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment").field("variables", &self.variables.keys().collect::<Vec<_>>()).finish()
    }
}

impl<'a> Environment<'a> {
    /// An environment whose `%resource`, `%rootResource` and context are `resource`. If
    /// `resource` is a Bundle, `resolve()` also looks among its entries.
    pub fn new(resource: &'a Json) -> Environment<'a> {
        let item = Item::resource(resource);
        let bundle = (resource.get("resourceType").and_then(Json::as_str) == Some("Bundle")).then_some(resource);
        Environment {
            resource: Some(item.clone()),
            root_resource: Some(item.clone()),
            context: Some(item),
            bundle,
            ..Environment::default()
        }
    }

    /// An environment with nothing in it (expressions over literals only).
    pub fn empty() -> Environment<'a> {
        Environment::default()
    }

    /// Evaluates from `node` (`%context`) instead of the resource; `type_name` is its FHIR
    /// type (`HumanName`, or a resource type; `None` for a resource, taken from `resourceType`).
    pub fn with_context(mut self, node: &'a Json, type_name: Option<&str>) -> Environment<'a> {
        self.context = Some(match type_name {
            Some(t) => Item::typed(node, t),
            None => Item::resource(node),
        });
        self
    }

    /// Evaluates from `item` (`%context`), an item an earlier evaluation returned: unlike
    /// [`Environment::with_context`] it keeps the item's place in the type model, so a backbone
    /// element (`Observation.component`) still knows its children.
    pub fn with_context_item(mut self, item: Item<'a>) -> Environment<'a> {
        self.context = Some(item);
        self
    }

    /// Sets `%rootResource` (the container when `%resource` is a contained resource, or the
    /// Bundle holding it).
    pub fn with_root_resource(mut self, root: &'a Json) -> Environment<'a> {
        self.root_resource = Some(Item::resource(root));
        self
    }

    /// A Bundle whose entries `resolve()` searches by `fullUrl` and `type/id`.
    pub fn with_bundle(mut self, bundle: &'a Json) -> Environment<'a> {
        self.bundle = Some(bundle);
        self
    }

    /// Defines `%name`.
    pub fn with_variable(mut self, name: &str, items: Vec<Item<'a>>) -> Environment<'a> {
        self.variables.insert(name.to_owned(), items);
        self
    }

    /// Sends `trace()` output to `sink` (without one, it is dropped).
    pub fn with_trace(mut self, sink: &'a dyn TraceSink) -> Environment<'a> {
        self.trace = Some(sink);
        self
    }

    /// Fixes `now()`/`today()`/`timeOfDay()` (by default the clock, read once per evaluation).
    pub fn with_now(mut self, now: value::DateTime) -> Environment<'a> {
        self.now = Some(now);
        self
    }

    /// Strict mode: a type name at the start of a path that is not the context's type is an
    /// error instead of an empty result.
    pub fn strict(mut self, strict: bool) -> Environment<'a> {
        self.strict = strict;
        self
    }
}

#[cfg(test)]
mod tests;
