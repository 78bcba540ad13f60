//! What differs between the backends' SQL.

use crate::{Params, Value};
use search::SearchQuery;

/// A backend's SQL dialect and table layout: everything the planner writes differently per
/// backend. The methods with a default are planner hints one backend needs and another does
/// without; the default writes no hint.
pub trait Dialect {
    /// Where the rows of some resource types are read from: the names of their tables and a
    /// condition every row there meets (a shard, say). `()` for a backend with one set of
    /// tables; the default is every row of every type.
    type Scope: Clone + Default;

    /// The row key column of `resource_current`, which the index tables' `rid` refers to.
    const ROW_KEY: &'static str;
    /// The literal true condition.
    const TRUE: &'static str;
    /// The literal false condition.
    const FALSE: &'static str;

    /// The placeholder of the `n`th bound value (from 1), which is `value`.
    fn placeholder(n: usize, value: &Value) -> String;

    /// The test that a column's value is one of `values` (several), written after the
    /// column: `IN (…)`, `= ANY(…)`.
    fn among(&self, params: &mut Params, values: &[i64]) -> String;

    /// The condition that the resource row `alias` is live (not a deletion).
    fn live(&self, alias: &str) -> String;

    /// `SELECT` of the row keys (in the index tables' `rid`) of the resources in `scope` whose
    /// narrative (or whole content, `content`) matches the user's full-text `query`.
    fn text_rows(&self, params: &mut Params, scope: &Self::Scope, content: bool, query: &str) -> String;

    /// The scope of the rows a search matches; a value its condition names (a shard key) is
    /// bound through `params`.
    fn search_scope(&self, params: &mut Params, query: &SearchQuery) -> Self::Scope;

    /// The scope of the rows of resources of `types` (a chain's targets, `_has` sources, the
    /// Lists of `_list`).
    fn scope_of(&self, types: &[String]) -> Self::Scope;

    /// The scope of the one resource `resource_type/id`, whose id is bound as `id`.
    fn resource_scope(&self, resource_type: &str, id: &str) -> Self::Scope;

    /// The name of the table `base` (`resource_current`, `search_token`…) in `scope`.
    fn table(&self, scope: &Self::Scope, base: &str) -> String;

    /// The condition every row `alias` of `scope`'s tables meets, when there is one.
    fn scope_condition(&self, scope: &Self::Scope, alias: &str) -> Option<String>;

    /// A hint, after an index table's alias, to look its rows up by `rid` (`table`: its name).
    fn by_rid_hint(&self, _table: &str) -> String {
        String::new()
    }

    /// The join that keeps the order in which its tables are written.
    fn ordered_join(&self) -> &'static str {
        "JOIN"
    }

    /// `column` as an expression whose index is not used for the condition it is in.
    fn unindexed(&self, column: &str) -> String {
        column.to_string()
    }

    /// Whether references to several ids also test `target_id IN (…)`, so that the ids are
    /// sought in the `(param, target_id, …)` index rather than every index row of the
    /// parameter tested against every pair.
    fn seeks_reference_ids(&self) -> bool {
        false
    }
}
